package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.Uapi;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The agent's QMP hot-plug exchange against a transcript recorded from the real QEMU 10.0.2 here
 * ({@code hack/record-qmp-hotplug.py}: q35 under TCG, firmware only, a free pcie-root-port hotplug0): a fake
 * QEMU on the other end of a socket pair checks every line the client sends against the recorded one (as JSON,
 * and whether an fd came with it by SCM_RIGHTS, and that it is the very file sent: st_dev/st_ino) and answers
 * with QEMU's recorded lines, events included.
 */
class QmpHotplugTranscriptTest {
  static final ObjectMapper JSON = new ObjectMapper();

  record Line(boolean fromClient, String json, boolean withFd) {}

  static List<Line> transcript() throws Exception {
    List<Line> lines = new ArrayList<>();
    try (InputStream in = QmpHotplugTranscriptTest.class.getResourceAsStream("/qmp/hotplug-qemu10.txt")) {
      for (String l : new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().toList()) {
        if (l.startsWith("> ")) {
          boolean fd = l.endsWith(" #fd");
          lines.add(new Line(true, fd ? l.substring(2, l.length() - 4) : l.substring(2), fd));
        } else if (l.startsWith("< ")) {
          lines.add(new Line(false, l.substring(2), false));
        }
      }
    }
    return lines;
  }

  /** Plays QEMU's side of the transcript on fd; returns what did not match. */
  static List<String> playQemu(int fd, List<Line> lines, Path sentFile) {
    List<String> problems = new ArrayList<>();
    ByteArrayOutputStream pending = new ByteArrayOutputStream();
    try {
      for (Line line : lines) {
        if (!line.fromClient()) {
          Kernel.writeFully(fd, line.json() + "\n");
          continue;
        }
        List<Integer> fds = new ArrayList<>();
        String got = null;
        while (got == null) {
          String buffered = pending.toString(StandardCharsets.UTF_8);
          int nl = buffered.indexOf('\n');
          if (nl >= 0) {
            got = buffered.substring(0, nl);
            pending.reset();
            pending.write(buffered.substring(nl + 1).getBytes(StandardCharsets.UTF_8));
            break;
          }
          Kernel.Received r = Kernel.recvWithFds(fd, 65536, 4);
          if (r.data().length == 0) {
            problems.add("client closed before sending " + line.json());
            return problems;
          }
          fds.addAll(r.fds());
          pending.write(r.data());
        }
        if (!JSON.readTree(got).equals(JSON.readTree(line.json()))) {
          problems.add("client sent " + got + ", QEMU was sent " + line.json());
        }
        if (line.withFd() != !fds.isEmpty()) {
          problems.add(got + ": " + fds.size() + " fds came, recorded " + (line.withFd() ? "one" : "none"));
        }
        for (int f : fds) {
          Object ino = Files.getAttribute(Path.of("/proc/self/fd/" + f), "unix:ino");
          Object dev = Files.getAttribute(Path.of("/proc/self/fd/" + f), "unix:dev");
          if (!ino.equals(Files.getAttribute(sentFile, "unix:ino")) || !dev.equals(Files.getAttribute(sentFile, "unix:dev"))) {
            problems.add("the fd that came with " + got + " is not " + sentFile);
          }
          Kernel.close(f);
        }
      }
    } catch (Exception e) {
      problems.add("fake QEMU: " + e);
    }
    return problems;
  }

  @Test
  void theAgentsHotplugExchangeMatchesWhatRealQemu10Said(@TempDir Path dir) throws Exception {
    List<Line> lines = transcript();
    assertThat(lines).hasSizeGreaterThan(15);
    Path device = Files.writeString(dir.resolve("stand-in-cdev"), "x");
    int[] pair = Kernel.socketPair();
    CompletableFuture<List<String>> qemu = CompletableFuture.supplyAsync(() -> playQemu(pair[1], lines, device));
    int fd = Kernel.open(device.toString(), Uapi.O_RDWR);
    try (Qmp qmp = new Qmp(pair[0])) {
      qmp.handshake();
      assertThat(qmp.version()).isEqualTo("10.0.2");
      // getfd: the fd goes along with the command's bytes (the agent closes its copy afterwards)
      qmp.getfd("hotfd0", fd);
      ObjectNode e1000e = JSON.createObjectNode().put("driver", "e1000e").put("id", "hotdev0").put("bus", "hotplug0");
      qmp.execute("device_add", e1000e, -1);
      JsonNode pci = qmp.execute("query-pci");
      // added behind the reserved port, but no guest OS enabled it: its BARs are unmapped (-1) - not Attached yet;
      // the xhci the firmware set up at boot has its BAR mapped
      assertThat(Qmp.pciDeviceIds(pci)).contains("hotplug0", "hotdev0", "xhci");
      assertThat(Qmp.guestEnabled(pci, "hotdev0")).isFalse();
      assertThat(Qmp.guestEnabled(pci, "xhci")).isTrue();
      assertThat(Qmp.guestEnabled(pci, "nothing")).isFalse();
      // a PCIe unplug needs the guest: without one no DEVICE_DELETED comes, and the wait is bounded
      qmp.deviceDel("hotdev0");
      long t0 = System.nanoTime();
      assertThat(qmp.awaitDeviceDeleted("hotdev0", 500)).isFalse();
      assertThat(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0)).isLessThan(5_000);
      // a device whose unplug needs no guest: QEMU's real DEVICE_DELETED, after device_del's return
      qmp.execute("device_add", JSON.createObjectNode().put("driver", "usb-tablet").put("id", "hotdev2").put("bus", "xhci.0"), -1);
      qmp.deviceDel("hotdev2");
      assertThat(qmp.awaitDeviceDeleted("hotdev2", 10_000)).isTrue();
      // the agent's vfio-pci device_add, as it sends it; QEMU's real refusal (no iommufd object here)
      assertThatThrownBy(() -> qmp.deviceAddVfio("hotdev1", "hotplug0", "hotfd0"))
          .isInstanceOf(Qmp.QmpException.class)
          .hasMessage("device_add: Device 'iommufd0' not found");
      assertThat(NodeAgent.qmpErrno("device_add: Device 'iommufd0' not found")).isEqualTo("QemuRefused");
      qmp.closefd("hotfd0");
      qmp.execute("quit");
      assertThat(qmp.events()).extracting(e -> e.path("event").asText()).contains("SHUTDOWN");
    } finally {
      Kernel.closeQuietly(fd);
    }
    assertThat(qemu.get(30, TimeUnit.SECONDS)).isEmpty();
    Kernel.closeQuietly(pair[1]);
  }

  @Test
  void aQemuErrnoIsNamed() {
    assertThat(NodeAgent.qmpErrno("device_add: vfio 0000:00:04.0: vfio_container_dma_map(0x5, 0x0, 0x8000000) = -12 (Cannot allocate memory)"))
        .isEqualTo("ENOMEM");
  }
}
