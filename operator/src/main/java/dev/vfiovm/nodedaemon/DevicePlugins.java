package dev.vfiovm.nodedaemon;

import dev.vfiovm.nodedaemon.v1beta1.DevicePluginOptions;
import dev.vfiovm.nodedaemon.v1beta1.RegisterRequest;
import dev.vfiovm.nodedaemon.v1beta1.RegistrationGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The kubelet device plugins of this node: one gRPC server per resource on a unix socket in the kubelet's
 * device-plugin directory, each registered with the kubelet's {@value #KUBELET_SOCKET}. {@link #sync} (called
 * every few seconds) rescans the host, starts a plugin for a resource that appeared, sends changed device lists
 * (health) down the ListAndWatch streams, and when the kubelet restarted (it recreates its socket, and removes
 * ours) serves and registers every plugin again.
 */
public final class DevicePlugins implements AutoCloseable {
  public static final String KUBELET_SOCKET = "kubelet.sock";
  public static final String API_VERSION = "v1beta1";
  private static final Logger LOG = LoggerFactory.getLogger(DevicePlugins.class);

  private final Path pluginDir;
  private final Path hostRoot;
  private final int iommuSlots;
  private final EventLoopGroup loop = new EpollEventLoopGroup(2);
  private final Map<String, Served> served = new LinkedHashMap<>();
  private Object kubeletSocketKey;

  private static final class Served {
    final ResourcePlugin plugin;
    Server server;
    Path socket;
    boolean registered;

    Served(ResourcePlugin plugin) {
      this.plugin = plugin;
    }
  }

  public DevicePlugins(Path pluginDir, Path hostRoot, int iommuSlots) {
    this.pluginDir = pluginDir;
    this.hostRoot = hostRoot;
    this.iommuSlots = iommuSlots;
  }

  /** Socket file name of a resource's plugin: vfiovm.dev/pci-0000-00-03.0 -> vfiovm-pci-0000-00-03.0.sock. */
  public static String socketName(String resource) {
    return resource.replace("vfiovm.dev/", "vfiovm-").replace('/', '-') + ".sock";
  }

  /** One round: rescan, serve and register what needs it. Never throws for a kubelet that is not there yet. */
  public synchronized void sync() {
    Map<String, List<DeviceInventory.Device>> now =
        DeviceInventory.advertise(DeviceInventory.scan(hostRoot), iommuSlots);
    for (Map.Entry<String, List<DeviceInventory.Device>> e : now.entrySet()) {
      served.computeIfAbsent(e.getKey(), r -> new Served(new ResourcePlugin(r, e.getValue())))
          .plugin.update(e.getValue());
    }
    for (Served s : served.values()) {
      if (!now.containsKey(s.plugin.resource())) {
        // the device went (unbound from vfio-pci, removed): still served, unhealthy, so the kubelet stops giving it
        s.plugin.update(s.plugin.devices().stream()
            .map(d -> new DeviceInventory.Device(d.id(), false, d.paths())).toList());
      }
    }
    Object key = fileKey(pluginDir.resolve(KUBELET_SOCKET));
    if (key == null) {
      if (kubeletSocketKey != null) {
        LOG.info("{} is gone (kubelet stopped?): waiting for it", pluginDir.resolve(KUBELET_SOCKET));
      }
      kubeletSocketKey = null;
      return;
    }
    boolean kubeletRestarted = !key.equals(kubeletSocketKey);
    if (kubeletRestarted && kubeletSocketKey != null) {
      LOG.info("{} was recreated (kubelet restarted): serving and registering every plugin again",
          pluginDir.resolve(KUBELET_SOCKET));
    }
    kubeletSocketKey = key;
    for (Served s : served.values()) {
      try {
        boolean socketGone = s.socket == null || !Files.exists(s.socket);
        if (socketGone || kubeletRestarted) {
          restartServer(s);
        }
        if (!s.registered) {
          register(s);
        }
      } catch (IOException | RuntimeException e) {
        s.registered = false;
        LOG.warn("{}: not registered with the kubelet yet: {}", s.plugin.resource(), e.toString());
      }
    }
  }

  /** Resource -> whether it is registered with the current kubelet (for logs and tests). */
  public synchronized Map<String, Boolean> registered() {
    Map<String, Boolean> r = new LinkedHashMap<>();
    served.forEach((k, v) -> r.put(k, v.registered));
    return r;
  }

  private void restartServer(Served s) throws IOException {
    stopServer(s);
    Path socket = pluginDir.resolve(socketName(s.plugin.resource()));
    Files.deleteIfExists(socket);
    s.server = NettyServerBuilder.forAddress(new DomainSocketAddress(socket.toString()))
        .channelType(EpollServerDomainSocketChannel.class)
        .bossEventLoopGroup(loop)
        .workerEventLoopGroup(loop)
        .addService(s.plugin)
        .build()
        .start();
    s.socket = socket;
    s.registered = false;
    LOG.info("{}: serving on {}", s.plugin.resource(), socket);
  }

  private void register(Served s) {
    ManagedChannel channel = NettyChannelBuilder
        .forAddress(new DomainSocketAddress(pluginDir.resolve(KUBELET_SOCKET).toString()))
        .channelType(EpollDomainSocketChannel.class)
        .eventLoopGroup(loop)
        .usePlaintext()
        .build();
    try {
      RegistrationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
          .register(RegisterRequest.newBuilder()
              .setVersion(API_VERSION)
              .setEndpoint(s.socket.getFileName().toString())
              .setResourceName(s.plugin.resource())
              .setOptions(DevicePluginOptions.getDefaultInstance())
              .build());
      s.registered = true;
      LOG.info("{}: registered with the kubelet ({} devices)", s.plugin.resource(),
          ResourcePlugin.describe(s.plugin.devices()));
    } finally {
      channel.shutdownNow();
    }
  }

  private static void stopServer(Served s) {
    s.plugin.closeStreams();
    if (s.server != null) {
      s.server.shutdownNow();
      try {
        s.server.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      s.server = null;
    }
  }

  private static Object fileKey(Path p) {
    try {
      BasicFileAttributes a = Files.readAttributes(p, BasicFileAttributes.class);
      // inode + creation: a recreated socket differs even if the inode number is reused
      return List.of(Objects.toString(a.fileKey()), a.lastModifiedTime().toMillis());
    } catch (IOException e) {
      return null;
    }
  }

  @Override
  public synchronized void close() {
    for (Served s : new ArrayList<>(served.values())) {
      stopServer(s);
      if (s.socket != null) {
        try {
          Files.deleteIfExists(s.socket);
        } catch (IOException e) {
          // best effort
        }
      }
    }
    served.clear();
    loop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
  }
}
