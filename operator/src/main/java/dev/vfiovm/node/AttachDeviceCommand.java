package dev.vfiovm.node;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * A hot-plugged device's attachment pod (also a CLI): resolves BDF to its VFIO cdev, opens it, sends the VM's
 * node agent a plug request with that fd (SCM_RIGHTS) over its control socket, prints the reply and exits 1 with
 * the agent's error if the plug failed; else holds until SIGTERM, then sends the unplug and exits 0 once the
 * agent replied (1 if the unplug failed). {@code --unplug-only}: just the unplug (a boot-time device).
 */
@Command(
    name = "attach-device",
    mixinStandardHelpOptions = true,
    description = "Hot-plug a VFIO device into a running VM through its node agent's control socket; unplug on SIGTERM.")
public final class AttachDeviceCommand implements Callable<Integer> {
  @Option(names = "--control-socket", required = true, paramLabel = "PATH", description = "The node agent's control socket.")
  Path controlSocket;

  @Option(names = "--device", required = true, paramLabel = "BDF", description = "PCI address of the VFIO device.")
  String device;

  @Option(names = "--memlock", required = true, paramLabel = "Q", description = "The VM's RLIMIT_MEMLOCK with the device (raised before device_add when higher).")
  String memlock;

  @Option(names = "--unplug-memlock", paramLabel = "Q", description = "The VM's limit after the unplug; default the limit before the plug (--unplug-only: --memlock).")
  String unplugMemlock;

  @Option(names = "--unplug-only", description = "Only send the unplug (a device plugged at boot) and exit.")
  boolean unplugOnly;

  private final CountDownLatch stop = new CountDownLatch(1);

  @Override
  public Integer call() {
    String bdf;
    long limit;
    Long unplugLimit;
    try {
      bdf = SysfsDevices.normalize(device);
      limit = Quantities.positiveBytes(memlock, "--memlock");
      unplugLimit = unplugMemlock == null ? null : Quantities.positiveBytes(unplugMemlock, "--unplug-memlock");
    } catch (IllegalArgumentException | DeviceResolutionException e) {
      System.err.println("attach-device: InvalidArgument: " + e.getMessage());
      return 2;
    }
    if (unplugOnly) {
      return unplug(bdf, unplugLimit != null ? unplugLimit : limit);
    }
    int fd;
    try {
      DevicePath path = SysfsDevices.host().resolve(bdf);
      fd = Kernel.open(path.cdev(), Uapi.O_RDWR);
    } catch (DeviceResolutionException e) {
      System.err.println("attach-device: " + e.reason() + ": " + e.getMessage());
      return 1;
    } catch (KernelException e) {
      System.err.println("attach-device: " + e.errnoName() + ": " + e.getMessage());
      return 1;
    }
    sun.misc.Signal.handle(new sun.misc.Signal("TERM"), sig -> stop.countDown());
    sun.misc.Signal.handle(new sun.misc.Signal("INT"), sig -> stop.countDown());
    ControlSocket.Reply reply;
    try {
      reply = exchange(ControlSocket.requestJson(ControlSocket.Op.plug, bdf, limit), fd);
    } finally {
      // the agent (and then QEMU) hold their own copies; the device stays in use by the VM, not by this process
      Kernel.closeQuietly(fd);
    }
    if (reply == null) {
      return 1;
    }
    if (!reply.ok()) {
      System.err.println("attach-device: " + reply.error() + ": " + reply.message());
      return 1;
    }
    long after = unplugLimit != null ? unplugLimit
        : reply.previousMemlockLimitBytes() != null ? reply.previousMemlockLimitBytes() : limit;
    System.out.println("attach-device: " + bdf + " attached; holding it until SIGTERM (then unplug, limit " + after + ")");
    System.out.flush();
    try {
      stop.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    return unplug(bdf, after);
  }

  private int unplug(String bdf, long limit) {
    ControlSocket.Reply reply = exchange(ControlSocket.requestJson(ControlSocket.Op.unplug, bdf, limit), -1);
    if (reply == null) {
      return 1;
    }
    if (!reply.ok()) {
      System.err.println("attach-device: " + reply.error() + ": " + reply.message());
      return 1;
    }
    return 0;
  }

  /** One request (with fd by SCM_RIGHTS when &gt;= 0), its reply printed; null (and a line on stderr) if none came. */
  private ControlSocket.Reply exchange(String request, int fd) {
    int conn;
    try {
      conn = Kernel.unixConnect(controlSocket.toString());
    } catch (KernelException e) {
      System.err.println("attach-device: " + e.errnoName() + ": cannot reach the node agent at " + controlSocket
          + ": " + e.getMessage());
      return null;
    }
    try {
      System.out.println("attach-device: -> " + request);
      System.out.flush();
      KernelException sendFailed = null;
      try {
        Kernel.sendWithFd(conn, (request + "\n").getBytes(StandardCharsets.UTF_8), fd);
      } catch (KernelException e) {
        // the agent may have refused before reading (a peer it does not serve) and closed: its reply is there
        sendFailed = e;
      }
      String line = Kernel.readLine(conn);
      if (line == null && sendFailed != null) {
        throw sendFailed;
      }
      if (line == null) {
        System.err.println("attach-device: NoReply: the node agent closed the connection without a reply");
        return null;
      }
      System.out.println("attach-device: <- " + line);
      System.out.flush();
      return ControlSocket.Reply.parse(line);
    } catch (KernelException e) {
      System.err.println("attach-device: " + e.errnoName() + ": " + e.getMessage());
      return null;
    } finally {
      Kernel.closeQuietly(conn);
    }
  }
}
