package dev.vfiovm.nodedaemon;

import dev.vfiovm.nodedaemon.v1beta1.AllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.AllocateResponse;
import dev.vfiovm.nodedaemon.v1beta1.ContainerAllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.ContainerAllocateResponse;
import dev.vfiovm.nodedaemon.v1beta1.DevicePluginGrpc;
import dev.vfiovm.nodedaemon.v1beta1.DevicePluginOptions;
import dev.vfiovm.nodedaemon.v1beta1.DeviceSpec;
import dev.vfiovm.nodedaemon.v1beta1.Empty;
import dev.vfiovm.nodedaemon.v1beta1.ListAndWatchResponse;
import dev.vfiovm.nodedaemon.v1beta1.PreStartContainerRequest;
import dev.vfiovm.nodedaemon.v1beta1.PreStartContainerResponse;
import dev.vfiovm.nodedaemon.v1beta1.PreferredAllocationRequest;
import dev.vfiovm.nodedaemon.v1beta1.PreferredAllocationResponse;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The kubelet's DevicePlugin service (deviceplugin/v1beta1) for one resource. */
final class ResourcePlugin extends DevicePluginGrpc.DevicePluginImplBase {
  static final String HEALTHY = "Healthy";
  static final String UNHEALTHY = "Unhealthy";
  private static final Logger LOG = LoggerFactory.getLogger(ResourcePlugin.class);

  private final String resource;
  private final List<StreamObserver<ListAndWatchResponse>> watchers = new CopyOnWriteArrayList<>();
  private volatile List<DeviceInventory.Device> devices;

  ResourcePlugin(String resource, List<DeviceInventory.Device> devices) {
    this.resource = resource;
    this.devices = List.copyOf(devices);
  }

  String resource() {
    return resource;
  }

  List<DeviceInventory.Device> devices() {
    return devices;
  }

  /** New device list: sent to every ListAndWatch stream when it differs from the last one. */
  synchronized void update(List<DeviceInventory.Device> next) {
    if (next.equals(devices)) {
      return;
    }
    devices = List.copyOf(next);
    LOG.info("{}: devices now {}", resource, describe(devices));
    ListAndWatchResponse response = listResponse(devices);
    for (StreamObserver<ListAndWatchResponse> w : watchers) {
      try {
        w.onNext(response);
      } catch (RuntimeException e) {
        watchers.remove(w);
      }
    }
  }

  /** Ends every ListAndWatch stream (the server is going away). */
  void closeStreams() {
    for (StreamObserver<ListAndWatchResponse> w : watchers) {
      try {
        w.onCompleted();
      } catch (RuntimeException e) {
        // the kubelet already went
      }
    }
    watchers.clear();
  }

  static String describe(List<DeviceInventory.Device> devices) {
    long healthy = devices.stream().filter(DeviceInventory.Device::healthy).count();
    return devices.size() + " (" + healthy + " healthy)";
  }

  static ListAndWatchResponse listResponse(List<DeviceInventory.Device> devices) {
    ListAndWatchResponse.Builder b = ListAndWatchResponse.newBuilder();
    for (DeviceInventory.Device d : devices) {
      b.addDevicesBuilder().setID(d.id()).setHealth(d.healthy() ? HEALTHY : UNHEALTHY);
    }
    return b.build();
  }

  /**
   * The Allocate answer: per container, one DeviceSpec (host path = container path, "rw") per distinct device
   * node of exactly the devices asked. Pure; an ID this resource does not have is an IllegalArgumentException.
   */
  static AllocateResponse allocate(String resource, List<DeviceInventory.Device> devices, AllocateRequest request) {
    Map<String, DeviceInventory.Device> byId = new LinkedHashMap<>();
    devices.forEach(d -> byId.put(d.id(), d));
    AllocateResponse.Builder response = AllocateResponse.newBuilder();
    for (ContainerAllocateRequest container : request.getContainerRequestsList()) {
      Set<String> paths = new LinkedHashSet<>();
      for (String id : container.getDevicesIDsList()) {
        DeviceInventory.Device d = byId.get(id);
        if (d == null) {
          throw new IllegalArgumentException(resource + " has no device " + id + " on this node (it has "
              + byId.keySet() + ")");
        }
        paths.addAll(d.paths());
      }
      ContainerAllocateResponse.Builder c = ContainerAllocateResponse.newBuilder();
      for (String path : paths) {
        c.addDevices(DeviceSpec.newBuilder().setHostPath(path).setContainerPath(path).setPermissions("rw"));
      }
      response.addContainerResponses(c);
    }
    return response.build();
  }

  @Override
  public void getDevicePluginOptions(Empty request, StreamObserver<DevicePluginOptions> out) {
    reply(out, DevicePluginOptions.getDefaultInstance());
  }

  @Override
  public void listAndWatch(Empty request, StreamObserver<ListAndWatchResponse> out) {
    if (out instanceof ServerCallStreamObserver<ListAndWatchResponse> server) {
      server.setOnCancelHandler(() -> watchers.remove(out));
    }
    synchronized (this) {
      out.onNext(listResponse(devices));
      watchers.add(out);
    }
    LOG.info("{}: the kubelet watches ({} devices)", resource, describe(devices));
  }

  @Override
  public void getPreferredAllocation(PreferredAllocationRequest request, StreamObserver<PreferredAllocationResponse> out) {
    reply(out, PreferredAllocationResponse.getDefaultInstance());
  }

  @Override
  public void allocate(AllocateRequest request, StreamObserver<AllocateResponse> out) {
    try {
      AllocateResponse response = allocate(resource, devices, request);
      LOG.info("{}: allocate {} -> {}", resource, request.getContainerRequestsList().stream()
          .map(ContainerAllocateRequest::getDevicesIDsList).toList(), response.getContainerResponsesList().stream()
          .map(c -> c.getDevicesList().stream().map(DeviceSpec::getHostPath).toList()).toList());
      reply(out, response);
    } catch (IllegalArgumentException e) {
      out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
    }
  }

  @Override
  public void preStartContainer(PreStartContainerRequest request, StreamObserver<PreStartContainerResponse> out) {
    reply(out, PreStartContainerResponse.getDefaultInstance());
  }

  /** A unary call's one answer. */
  private static <T> void reply(StreamObserver<T> out, T value) {
    out.onNext(value);
    out.onCompleted();
  }
}
