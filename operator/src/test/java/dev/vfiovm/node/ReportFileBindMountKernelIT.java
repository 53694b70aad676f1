package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.testing.Prerequisites;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * In a pod the report file is the container's terminationMessagePath, which the kubelet bind-mounts from
 * the host: found on the real local node (hack/local), where the agent died with EBUSY renaming over it.
 * Reproduces that mount and checks every report still lands in the file.
 */
class ReportFileBindMountKernelIT {
  @Test
  void reportIsWrittenWhenTheFileIsABindMountAsInAPod(@TempDir Path dir) throws Exception {
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (bind mounts)");
    Path hostFile = Files.createFile(dir.resolve("termination-log"));
    Path report = Files.createDirectories(dir.resolve("run/vfiovm")).resolve("report.json");
    Files.createFile(report);
    run("mount", "--bind", hostFile.toString(), report.toString());
    try (ReportPublisher publisher = new ReportPublisher(report, null)) {
      NodeAgentReport r = new NodeAgentReport();
      r.setPhase(AgentPhase.Starting);
      publisher.publish(r);
      r.setPhase(AgentPhase.Running);
      r.setPinnedBytes(2097152L);
      publisher.publish(r);
    } finally {
      run("umount", report.toString());
    }
    NodeAgentReport seenByKubelet = ReportPublisher.fromJson(Files.readString(hostFile));
    assertThat(seenByKubelet.getPhase()).isEqualTo(AgentPhase.Running);
    assertThat(seenByKubelet.getPinnedBytes()).isEqualTo(2097152L);
    try (var files = Files.list(report.getParent())) {
      assertThat(files.map(f -> f.getFileName().toString())).containsExactly("report.json");
    }
  }

  private static void run(String... command) throws Exception {
    Process p = new ProcessBuilder(command).inheritIO().start();
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(String.join(" ", command)).isZero();
  }
}
