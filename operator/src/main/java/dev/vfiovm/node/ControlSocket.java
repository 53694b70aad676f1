package dev.vfiovm.node;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The agent's control socket (hot-plug): an AF_UNIX stream socket, mode 0600 in a 0700 directory, that only
 * peers with SO_PEERCRED uid 0 may use (the attachment pod's {@code attach-device}). Per connection one request,
 * one JSON line, and one reply line; a plug request carries the opened VFIO cdev by SCM_RIGHTS in the same
 * sendmsg as its first byte. One thread accepts and serves connections one after the other, so requests are
 * serialized. Never bound into the VM's sandbox.
 */
final class ControlSocket implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ControlSocket.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  /** A request line longer than this is refused. */
  static final int MAX_REQUEST = 16 * 1024;
  /** How long a connected peer may take to send its request line. */
  static final long REQUEST_MILLIS = 30_000;

  enum Op { plug, unplug }

  /** One request, validated. */
  record Request(Op op, String pciAddress, long memlockLimitBytes) {}

  /** One reply: ok with the device's state, or an error code and a sentence. */
  record Reply(boolean ok, String state, String error, String message, Long previousMemlockLimitBytes) {
    static Reply ok(String state) {
      return new Reply(true, state, null, null, null);
    }

    static Reply error(String error, String message) {
      return new Reply(false, null, error, message, null);
    }

    Reply withPrevious(long limit) {
      return new Reply(ok, state, error, message, limit);
    }

    String toJson() {
      ObjectNode o = JSON.createObjectNode().put("ok", ok);
      if (state != null) {
        o.put("state", state);
      }
      if (error != null) {
        o.put("error", error);
      }
      if (message != null) {
        o.put("message", message);
      }
      if (previousMemlockLimitBytes != null) {
        o.put("previousMemlockLimitBytes", previousMemlockLimitBytes);
      }
      return o.toString();
    }

    static Reply parse(String line) {
      try {
        JsonNode n = JSON.readTree(line);
        return new Reply(n.path("ok").asBoolean(false), text(n, "state"), text(n, "error"), text(n, "message"),
            n.has("previousMemlockLimitBytes") ? n.get("previousMemlockLimitBytes").asLong() : null);
      } catch (IOException e) {
        return error("BadReply", "unreadable reply from the agent: " + line);
      }
    }

    private static String text(JsonNode n, String field) {
      return n.hasNonNull(field) ? n.get(field).asText() : null;
    }
  }

  /** What the agent does with a request; owns {@code fd} (-1 if none came), closing it when done. */
  interface Handler {
    Reply handle(Request request, int fd);
  }

  /** Parses one request line; IllegalArgumentException says what is wrong with it. */
  static Request parse(String line) {
    JsonNode n;
    try {
      n = JSON.readTree(line);
    } catch (IOException e) {
      throw new IllegalArgumentException("not JSON: " + e.getMessage().lines().findFirst().orElse(""));
    }
    if (n == null || !n.isObject()) {
      throw new IllegalArgumentException("a request is one JSON object per line");
    }
    String op = n.path("op").asText("");
    Op parsed;
    try {
      parsed = Op.valueOf(op);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("op '" + op + "' must be plug or unplug");
    }
    JsonNode address = n.get("pciAddress");
    if (address == null || !address.isTextual()) {
      throw new IllegalArgumentException("pciAddress (DDDD:BB:DD.F) is missing");
    }
    JsonNode limit = n.get("memlockLimitBytes");
    if (limit == null || !limit.canConvertToLong() || !limit.isIntegralNumber() || limit.asLong() <= 0) {
      throw new IllegalArgumentException("memlockLimitBytes must be a positive number of bytes");
    }
    return new Request(parsed, SysfsDevices.normalize(address.asText()), limit.asLong());
  }

  static String requestJson(Op op, String pciAddress, long memlockLimitBytes) {
    return JSON.createObjectNode().put("op", op.name()).put("pciAddress", pciAddress)
        .put("memlockLimitBytes", memlockLimitBytes).toString();
  }

  private final Path path;
  private final int listenFd;
  private final Handler handler;
  private final Thread thread;
  private volatile boolean closed;

  private ControlSocket(Path path, int listenFd, Handler handler) {
    this.path = path;
    this.listenFd = listenFd;
    this.handler = handler;
    this.thread = new Thread(this::serve, "control-socket");
    this.thread.setDaemon(true);
  }

  /** Binds path (its directory made 0700, a stale socket replaced, the socket 0600) and starts serving. */
  static ControlSocket open(Path path, Handler handler) {
    try {
      Path dir = path.toAbsolutePath().getParent();
      Files.createDirectories(dir);
      Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
      Files.deleteIfExists(path);
    } catch (IOException e) {
      throw new AgentFailure("ControlSocket", "cannot prepare the control socket's directory for " + path + ": " + e);
    }
    int fd = Kernel.unixListen(path.toString(), 8);
    try {
      Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
    } catch (IOException e) {
      Kernel.closeQuietly(fd);
      throw new AgentFailure("ControlSocket", "cannot make " + path + " mode 0600: " + e);
    }
    ControlSocket s = new ControlSocket(path, fd, handler);
    s.thread.start();
    LOG.info("control socket {} (mode 0600, peers of uid 0 only)", path);
    return s;
  }

  Path path() {
    return path;
  }

  private void serve() {
    while (!closed) {
      int conn;
      try {
        if (!Kernel.awaitReadable(listenFd, 200)) {
          continue;
        }
        if (closed) {
          return;
        }
        conn = Kernel.accept(listenFd);
      } catch (KernelException e) {
        if (!closed) {
          LOG.warn("control socket: {}", e.getMessage());
        }
        return;
      }
      try {
        serveOne(conn);
      } catch (RuntimeException e) {
        LOG.warn("control socket: a request failed: {}", e.toString());
      } finally {
        Kernel.closeQuietly(conn);
      }
    }
  }

  private void serveOne(int conn) {
    List<Integer> fds = new ArrayList<>();
    try {
      Kernel.PeerCred peer = Kernel.peerCred(conn);
      if (peer.uid() != 0) {
        LOG.warn("control socket: refused a peer of uid {} (pid {})", peer.uid(), peer.pid());
        reply(conn, Reply.error("NotRoot", "the control socket serves only uid 0 (the attachment pod's root); "
            + "peer pid " + peer.pid() + " is uid " + peer.uid()));
        return;
      }
      String line = readRequest(conn, fds);
      Request request;
      try {
        request = parse(line);
      } catch (IllegalArgumentException | DeviceResolutionException e) {
        reply(conn, Reply.error("BadRequest", "malformed request (" + e.getMessage() + "); expected e.g. "
            + requestJson(Op.plug, "0000:00:04.0", 1L << 30) + " with the device's fd by SCM_RIGHTS"));
        return;
      }
      int fd = -1;
      if (request.op() == Op.plug) {
        if (fds.isEmpty()) {
          reply(conn, Reply.error("BadRequest", "a plug request carries the opened VFIO cdev of "
              + request.pciAddress() + " by SCM_RIGHTS with its first byte; none came"));
          return;
        }
        if (fds.size() > 1) {
          reply(conn, Reply.error("BadRequest", "a plug request carries exactly one fd; " + fds.size() + " came"));
          return;
        }
        fd = fds.remove(0);
      } else if (!fds.isEmpty()) {
        reply(conn, Reply.error("BadRequest", "an unplug request carries no fd"));
        return;
      }
      LOG.info("control socket: {} {} memlockLimitBytes={} (peer pid {})", request.op(), request.pciAddress(),
          request.memlockLimitBytes(), peer.pid());
      Reply r = handler.handle(request, fd);
      LOG.info("control socket: reply {}", r.toJson());
      reply(conn, r);
    } catch (RequestException e) {
      reply(conn, Reply.error("BadRequest", e.getMessage()));
    } finally {
      fds.forEach(Kernel::closeQuietly);
    }
  }

  private static final class RequestException extends RuntimeException {
    RequestException(String message) {
      super(message);
    }
  }

  /** The request line; every fd that came with it is added to fds. */
  private static String readRequest(int conn, List<Integer> fds) {
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    long deadline = System.currentTimeMillis() + REQUEST_MILLIS;
    while (true) {
      long left = deadline - System.currentTimeMillis();
      if (left <= 0 || !Kernel.awaitReadable(conn, left)) {
        throw new RequestException("no complete request line within " + REQUEST_MILLIS / 1000 + " s");
      }
      Kernel.Received got = Kernel.recvWithFds(conn, 4096, 4);
      fds.addAll(got.fds());
      if (got.data().length == 0) {
        throw new RequestException("the connection ended before a complete request line (one JSON line)");
      }
      for (byte b : got.data()) {
        if (b == '\n') {
          return line.toString(StandardCharsets.UTF_8);
        }
        line.write(b);
      }
      if (line.size() > MAX_REQUEST) {
        throw new RequestException("request longer than " + MAX_REQUEST + " bytes");
      }
    }
  }

  private static void reply(int conn, Reply r) {
    try {
      Kernel.writeFully(conn, r.toJson() + "\n");
    } catch (KernelException e) {
      LOG.warn("control socket: the peer went away before the reply: {}", e.getMessage());
    }
  }

  /** Stops serving (a request being served is answered first) and removes the socket file. */
  @Override
  public void close() {
    closed = true;
    try {
      thread.join(5_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    Kernel.closeQuietly(listenFd);
    try {
      Files.deleteIfExists(path);
    } catch (IOException e) {
      LOG.debug("control socket {}: {}", path, e.toString());
    }
  }
}
