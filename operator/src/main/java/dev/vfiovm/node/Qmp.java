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
    ObjectNode cmd = JSON.createObjectNode().put("execute", command);
    try {
      Kernel.writeFully(fd, cmd + "\n");
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

  List<JsonNode> events() {
    return List.copyOf(events);
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
