package dev.vfiovm.node;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** QEMU's version, from {@code qemu --version}; vfiovm needs 9.0 (iommufd backend with fd passing). */
record QemuVersion(int major, int minor, int micro) {
  static final QemuVersion MINIMUM = new QemuVersion(9, 0, 0);
  private static final Pattern VERSION = Pattern.compile("QEMU emulator version (\\d+)\\.(\\d+)(?:\\.(\\d+))?");

  static QemuVersion parse(String versionOutput) {
    Matcher m = VERSION.matcher(versionOutput);
    if (!m.find()) {
      throw new IllegalArgumentException("no 'QEMU emulator version X.Y' in: " + versionOutput.strip());
    }
    return new QemuVersion(
        Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), m.group(3) == null ? 0 : Integer.parseInt(m.group(3)));
  }

  boolean atLeast(QemuVersion other) {
    if (major != other.major) {
      return major > other.major;
    }
    if (minor != other.minor) {
      return minor > other.minor;
    }
    return micro >= other.micro;
  }

  @Override
  public String toString() {
    return major + "." + minor + "." + micro;
  }

  /** Runs {@code qemu --version} (as the agent, before any VM exists) and checks the minimum. */
  static QemuVersion probe(String qemu) {
    String out;
    try {
      Process p = new ProcessBuilder(qemu, "--version").redirectErrorStream(true).start();
      out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AgentFailure("QemuNotUsable", qemu + " --version did not answer within 60 s");
      }
    } catch (IOException e) {
      throw new AgentFailure(
          "QemuNotFound",
          "cannot run QEMU '" + qemu + "': " + e.getMessage() + "; install qemu-system-x86 >= 9.0 (Debian bookworm: "
              + "10.0.2 from bookworm-backports) or point --qemu / VFIOVM_QEMU at it");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AgentFailure("QemuNotUsable", "interrupted while asking " + qemu + " for its version");
    }
    QemuVersion v;
    try {
      v = parse(out);
    } catch (IllegalArgumentException e) {
      throw new AgentFailure("QemuNotUsable", qemu + ": " + e.getMessage());
    }
    if (!v.atLeast(MINIMUM)) {
      throw new AgentFailure(
          "QemuTooOld",
          qemu + " is QEMU " + v + "; vfiovm needs QEMU >= " + MINIMUM + " (iommufd backend, VFIO cdev fd passing): "
              + "on Debian bookworm install qemu-system-x86 10.0.2 from bookworm-backports");
    }
    return v;
  }
}
