package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.testing.FakeHost;
import dev.vfiovm.nodedaemon.v1beta1.AllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.AllocateResponse;
import dev.vfiovm.nodedaemon.v1beta1.ContainerAllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.DevicePluginGrpc;
import dev.vfiovm.nodedaemon.v1beta1.DeviceSpec;
import dev.vfiovm.nodedaemon.v1beta1.Empty;
import dev.vfiovm.nodedaemon.v1beta1.ListAndWatchResponse;
import dev.vfiovm.nodedaemon.v1beta1.RegisterRequest;
import dev.vfiovm.nodedaemon.v1beta1.RegistrationGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import io.grpc.stub.StreamObserver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real device plugin against a stand-in kubelet: real gRPC over real unix sockets in a temp plugin
 * directory, the host a fake sysfs/dev tree. What the kubelet does is played by the test: it serves
 * Registration on kubelet.sock, then dials each registered endpoint for ListAndWatch and Allocate.
 */
class DevicePluginIT {
  @TempDir Path pluginDir;
  @TempDir Path host;
  final EventLoopGroup loop = new EpollEventLoopGroup(1);
  final List<ManagedChannel> channels = new ArrayList<>();
  StandInKubelet kubelet;
  DevicePlugins plugins;

  /** Registration, as the kubelet serves it on kubelet.sock; remembers every request. */
  final class StandInKubelet extends RegistrationGrpc.RegistrationImplBase {
    final List<RegisterRequest> requests = new CopyOnWriteArrayList<>();
    final Server server;

    StandInKubelet() throws Exception {
      server = NettyServerBuilder.forAddress(new DomainSocketAddress(pluginDir.resolve("kubelet.sock").toString()))
          .channelType(EpollServerDomainSocketChannel.class).bossEventLoopGroup(loop).workerEventLoopGroup(loop)
          .addService(this).build().start();
    }

    @Override
    public void register(RegisterRequest request, StreamObserver<Empty> out) {
      requests.add(request);
      out.onNext(Empty.getDefaultInstance());
      out.onCompleted();
    }

    void stop() throws InterruptedException {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @BeforeEach
  void setUp() throws Exception {
    new FakeHost(host).iommu().pci("0000:00:03.0", "vfio-pci", "vfio0", true).pci("0000:00:02.0", "e1000e", null, false);
    kubelet = new StandInKubelet();
    plugins = new DevicePlugins(pluginDir, host, 4);
  }

  @AfterEach
  void tearDown() throws Exception {
    channels.forEach(ManagedChannel::shutdownNow);
    plugins.close();
    kubelet.stop();
    loop.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
  }

  DevicePluginGrpc.DevicePluginBlockingStub plugin(String endpoint) {
    ManagedChannel c = NettyChannelBuilder.forAddress(new DomainSocketAddress(pluginDir.resolve(endpoint).toString()))
        .channelType(EpollDomainSocketChannel.class).eventLoopGroup(loop).usePlaintext().build();
    channels.add(c);
    return DevicePluginGrpc.newBlockingStub(c).withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  static AllocateRequest ask(String... ids) {
    return AllocateRequest.newBuilder()
        .addContainerRequests(ContainerAllocateRequest.newBuilder().addAllDevicesIDs(List.of(ids))).build();
  }

  static List<String> health(ListAndWatchResponse r) {
    return r.getDevicesList().stream().map(d -> d.getID() + "=" + d.getHealth()).toList();
  }

  @Test
  void registersEachResourceListsItsDevicesAndAllocatesExactlyThose() throws Exception {
    plugins.sync();

    assertThat(kubelet.requests).extracting(RegisterRequest::getResourceName)
        .containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0");
    assertThat(kubelet.requests).allSatisfy(r -> assertThat(r.getVersion()).isEqualTo("v1beta1"));
    assertThat(kubelet.requests).extracting(RegisterRequest::getEndpoint)
        .containsExactly("vfiovm-iommu.sock", "vfiovm-pci-0000-00-03.0.sock");
    try (Stream<Path> files = Files.list(pluginDir)) {
      assertThat(files.map(p -> p.getFileName().toString()))
          .containsExactlyInAnyOrder("kubelet.sock", "vfiovm-iommu.sock", "vfiovm-pci-0000-00-03.0.sock");
    }

    Iterator<ListAndWatchResponse> iommu = plugin("vfiovm-iommu.sock").listAndWatch(Empty.getDefaultInstance());
    assertThat(health(iommu.next())).containsExactly(
        "iommu-0=Healthy", "iommu-1=Healthy", "iommu-2=Healthy", "iommu-3=Healthy");
    AllocateResponse a = plugin("vfiovm-iommu.sock").allocate(ask("iommu-2"));
    assertThat(a.getContainerResponses(0).getDevicesList()).containsExactly(
        DeviceSpec.newBuilder().setHostPath("/dev/iommu").setContainerPath("/dev/iommu").setPermissions("rw").build());

    Iterator<ListAndWatchResponse> pci = plugin("vfiovm-pci-0000-00-03.0.sock").listAndWatch(Empty.getDefaultInstance());
    assertThat(health(pci.next())).containsExactly("0000:00:03.0=Healthy");
    AllocateResponse b = plugin("vfiovm-pci-0000-00-03.0.sock").allocate(ask("0000:00:03.0"));
    assertThat(b.getContainerResponses(0).getDevicesList()).containsExactly(DeviceSpec.newBuilder()
        .setHostPath("/dev/vfio/devices/vfio0").setContainerPath("/dev/vfio/devices/vfio0").setPermissions("rw").build());
    assertThatThrownBy(() -> plugin("vfiovm-pci-0000-00-03.0.sock").allocate(ask("0000:00:09.0")))
        .isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("no device 0000:00:09.0");

    // the device node goes: the open ListAndWatch stream says Unhealthy
    Files.delete(host.resolve("dev/vfio/devices/vfio0"));
    plugins.sync();
    assertThat(health(pci.next())).containsExactly("0000:00:03.0=Unhealthy");
    // and a new vfio-pci device appears: a new resource, registered
    new FakeHost(host).pci("0000:00:04.0", "vfio-pci", "vfio1", true);
    plugins.sync();
    assertThat(kubelet.requests).extracting(RegisterRequest::getResourceName).last()
        .isEqualTo("vfiovm.dev/pci-0000-00-04.0");
  }

  @Test
  void noIommuIsRegisteredWithNoDevice() throws Exception {
    Files.delete(host.resolve("dev/iommu"));
    plugins.sync();
    assertThat(kubelet.requests).extracting(RegisterRequest::getResourceName).contains("vfiovm.dev/iommu");
    assertThat(plugin("vfiovm-iommu.sock").listAndWatch(Empty.getDefaultInstance()).next().getDevicesList()).isEmpty();
  }

  @Test
  void reRegistersWhenTheKubeletRestarts() throws Exception {
    plugins.sync();
    assertThat(kubelet.requests).hasSize(2);
    plugins.sync();
    assertThat(kubelet.requests).as("no re-registration while the kubelet stays").hasSize(2);

    // a kubelet restart: it stops, empties the directory (as the kubelet does at start) and serves a new socket
    kubelet.stop();
    try (Stream<Path> files = Files.list(pluginDir)) {
      for (Path p : files.toList()) {
        Files.delete(p);
      }
    }
    plugins.sync();
    kubelet = new StandInKubelet();
    await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
      plugins.sync();
      assertThat(kubelet.requests).extracting(RegisterRequest::getResourceName)
          .containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0");
    });
    assertThat(health(plugin("vfiovm-iommu.sock").listAndWatch(Empty.getDefaultInstance()).next())).hasSize(4);
    assertThat(plugins.registered()).containsValues(true, true).doesNotContainValue(false);
  }
}
