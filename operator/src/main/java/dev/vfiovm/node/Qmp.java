package dev.vfiovm.node;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vfiovm.node.kernel.Kernel;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A minimal QMP client on the agent's end of the QMP socket pair (QEMU holds the other end as
 * {@code -chardev socket,fd=5}). One JSON object per line; events that arrive between replies are kept.
 * Blocking: the agent bounds each exchange from outside (QEMU exiting closes the socket: EOF).
 */
final class Qmp implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** QEMU said no, or went away. */
  static final class QmpException extends RuntimeException {
    QmpException(String message) {
      super(message);
    }
  }

  private final int fd;
  private final byte[] pending = new byte[8192];
  private int start;
  private int end;
  private final List<JsonNode> events = new ArrayList<>();
  private JsonNode version;

  Qmp(int fd) {
    this.fd = fd;
  }

  /** Reads the greeting (sent once QEMU's machine is built: devices realized, guest RAM mapped) and negotiates. */
  JsonNode handshake() {
    JsonNode greeting = next();
    if (!greeting.has("QMP")) {
      throw new QmpException("not a QMP greeting: " + greeting);
    }
    version = greeting.path("QMP").path("version");
    execute("qmp_capabilities");
    return version;
  }

  /** "10.0.2" from the greeting. */
  String version() {
    JsonNode q = version.path("qemu");
    return q.path("major").asInt() + "." + q.path("minor").asInt() + "." + q.path("micro").asInt();
  }

  JsonNode execute(String command) {
    return execute(command, null, -1);
  }

  /**
   * One command with arguments (null: none); passFd &gt;= 0 goes with it by SCM_RIGHTS in the same sendmsg
   * (QEMU attaches fds that arrive with a command's bytes to that command: {@code getfd}).
   */
  synchronized JsonNode execute(String command, ObjectNode arguments, int passFd) {
    ObjectNode cmd = JSON.createObjectNode().put("execute", command);
    if (arguments != null) {
      cmd.set("arguments", arguments);
    }
    try {
      Kernel.sendWithFd(fd, (cmd + "\n").getBytes(StandardCharsets.UTF_8), passFd);
    } catch (dev.vfiovm.node.kernel.KernelException e) {
      throw new QmpException("QEMU closed its QMP socket (it exited): " + e.getMessage());
    }
    while (true) {
      JsonNode reply = next();
      if (reply.has("event")) {
        events.add(reply);
      } else if (reply.has("error")) {
        throw new QmpException(command + ": " + reply.path("error").path("desc").asText());
      } else if (reply.has("return")) {
        return reply.get("return");
      }
    }
  }

  synchronized List<JsonNode> events() {
    return List.copyOf(events);
  }

  /** QMP getfd: QEMU keeps its own copy of fd under fdname (the caller may close its copy then). */
  void getfd(String fdname, int passFd) {
    execute("getfd", JSON.createObjectNode().put("fdname", fdname), passFd);
  }

  /** QMP closefd: QEMU drops the fd it holds under fdname (a getfd no device_add used). */
  void closefd(String fdname) {
    execute("closefd", JSON.createObjectNode().put("fdname", fdname), -1);
  }

  /** QMP device_add of a vfio-pci device handed over as fdname, behind root port bus, on iommufd0. */
  void deviceAddVfio(String id, String bus, String fdname) {
    execute("device_add", vfioDeviceArguments(id, bus, fdname), -1);
  }

  static ObjectNode vfioDeviceArguments(String id, String bus, String fdname) {
    return JSON.createObjectNode().put("driver", "vfio-pci").put("id", id).put("bus", bus)
        .put("iommufd", "iommufd0").put("fd", fdname);
  }

  /** QMP device_del: asks the guest to release the device; DEVICE_DELETED says it is gone. */
  void deviceDel(String id) {
    execute("device_del", JSON.createObjectNode().put("id", id), -1);
  }

  /**
   * Waits up to timeoutMillis for the DEVICE_DELETED event of qdev id (one already received counts); true if
   * it came. Each read holds the client only for a short poll, so other commands interleave.
   */
  boolean awaitDeviceDeleted(String id, long timeoutMillis) {
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    while (true) {
      synchronized (this) {
        for (int i = 0; i < events.size(); i++) {
          if (isDeviceDeleted(events.get(i), id)) {
            events.remove(i);
            return true;
          }
        }
        long left = (deadline - System.nanoTime()) / 1_000_000L;
        if (left <= 0) {
          return false;
        }
        if (start < end || Kernel.awaitReadable(fd, Math.min(left, 200))) {
          JsonNode message = next();
          if (message.has("event")) {
            events.add(message);
          }
        }
      }
    }
  }

  static boolean isDeviceDeleted(JsonNode event, String id) {
    return "DEVICE_DELETED".equals(event.path("event").asText()) && id.equals(event.path("data").path("device").asText());
  }

  /** A BAR QEMU has not mapped (the guest has not enabled decoding or not assigned it): PCI_BAR_UNMAPPED. */
  static final String UNMAPPED = "18446744073709551615";

  /**
   * True if query-pci shows device id with at least one memory BAR mapped: the guest assigned it an address
   * and enabled memory decoding (what a driver's pci_enable_device does). Absent or unmapped: false.
   */
  static boolean guestEnabled(JsonNode queryPci, String id) {
    JsonNode device = find(queryPci, id);
    if (device == null) {
      return false;
    }
    for (JsonNode r : device.path("regions")) {
      JsonNode address = r.path("address");
      if ("memory".equals(r.path("type").asText()) && address.isNumber() && !address.asText().equals(UNMAPPED)
          && address.asLong() != -1L) {
        return true;
      }
    }
    return false;
  }

  private static JsonNode find(JsonNode queryPci, String id) {
    for (JsonNode bus : queryPci) {
      JsonNode d = find(bus.path("devices"), id, 0);
      if (d != null) {
        return d;
      }
    }
    return null;
  }

  private static JsonNode find(JsonNode devices, String id, int depth) {
    for (JsonNode d : devices) {
      if (id.equals(d.path("qdev_id").asText())) {
        return d;
      }
      JsonNode inner = find(d.path("pci_bridge").path("devices"), id, depth + 1);
      if (inner != null) {
        return inner;
      }
    }
    return null;
  }

  /** The qdev ids of every PCI device QEMU shows, behind bridges too. */
  static List<String> pciDeviceIds(JsonNode queryPci) {
    List<String> ids = new ArrayList<>();
    for (JsonNode bus : queryPci) {
      collect(bus.path("devices"), ids);
    }
    return ids;
  }

  private static void collect(JsonNode devices, List<String> ids) {
    for (JsonNode d : devices) {
      String id = d.path("qdev_id").asText("");
      if (!id.isEmpty()) {
        ids.add(id);
      }
      collect(d.path("pci_bridge").path("devices"), ids);
    }
  }

  private JsonNode next() {
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    while (true) {
      if (start == end) {
        byte[] got;
        try {
          got = Kernel.read(fd, pending.length);
        } catch (dev.vfiovm.node.kernel.KernelException e) {
          throw new QmpException("QEMU closed its QMP socket (it exited): " + e.getMessage());
        }
        if (got.length == 0) {
          throw new QmpException("QEMU closed its QMP socket (it exited)");
        }
        System.arraycopy(got, 0, pending, 0, got.length);
        start = 0;
        end = got.length;
      }
      while (start < end) {
        byte b = pending[start++];
        if (b == '\n') {
          try {
            return JSON.readTree(line.toString(StandardCharsets.UTF_8));
          } catch (Exception e) {
            throw new QmpException("unreadable QMP message: " + e.getMessage());
          }
        }
        line.write(b);
      }
    }
  }

  @Override
  public void close() {
    Kernel.closeQuietly(fd);
  }
}
