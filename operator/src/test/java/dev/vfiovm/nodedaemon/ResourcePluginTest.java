package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.nodedaemon.DeviceInventory.Device;
import dev.vfiovm.nodedaemon.v1beta1.AllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.AllocateResponse;
import dev.vfiovm.nodedaemon.v1beta1.ContainerAllocateRequest;
import dev.vfiovm.nodedaemon.v1beta1.DeviceSpec;
import java.util.List;
import org.junit.jupiter.api.Test;

class ResourcePluginTest {
  static AllocateRequest request(List<String>... containers) {
    AllocateRequest.Builder b = AllocateRequest.newBuilder();
    for (List<String> ids : containers) {
      b.addContainerRequests(ContainerAllocateRequest.newBuilder().addAllDevicesIDs(ids));
    }
    return b.build();
  }

  static DeviceSpec rw(String path) {
    return DeviceSpec.newBuilder().setHostPath(path).setContainerPath(path).setPermissions("rw").build();
  }

  @Test
  void allocateGivesExactlyTheDeviceNodesAskedPerContainer() {
    List<Device> devices = List.of(
        new Device("0000:00:03.0", true, List.of("/dev/vfio/devices/vfio0")),
        new Device("0000:00:04.0", true, List.of("/dev/vfio/devices/vfio1")));
    @SuppressWarnings("unchecked")
    AllocateResponse r = ResourcePlugin.allocate("r", devices, request(List.of("0000:00:04.0"), List.of()));
    assertThat(r.getContainerResponsesCount()).isEqualTo(2);
    assertThat(r.getContainerResponses(0).getDevicesList()).containsExactly(rw("/dev/vfio/devices/vfio1"));
    assertThat(r.getContainerResponses(0).getEnvsMap()).isEmpty();
    assertThat(r.getContainerResponses(0).getMountsList()).isEmpty();
    assertThat(r.getContainerResponses(1).getDevicesList()).isEmpty();
  }

  @Test
  void sharedSlotsGiveTheirNodeOnce() {
    List<Device> slots = List.of(new Device("iommu-0", true, List.of("/dev/iommu")),
        new Device("iommu-1", true, List.of("/dev/iommu")));
    @SuppressWarnings("unchecked")
    AllocateResponse r = ResourcePlugin.allocate("vfiovm.dev/iommu", slots, request(List.of("iommu-1", "iommu-0")));
    assertThat(r.getContainerResponses(0).getDevicesList()).containsExactly(rw("/dev/iommu"));
  }

  @Test
  void unknownDeviceIsRefusedNamingIt() {
    @SuppressWarnings("unchecked")
    AllocateRequest req = request(List.of("iommu-9"));
    assertThatThrownBy(() -> ResourcePlugin.allocate("vfiovm.dev/iommu", List.of(), req))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("vfiovm.dev/iommu has no device iommu-9");
  }

  @Test
  void listResponseCarriesHealth() {
    var r = ResourcePlugin.listResponse(List.of(new Device("a", true, List.of("/dev/a")),
        new Device("b", false, List.of("/dev/b"))));
    assertThat(r.getDevicesList()).extracting(d -> d.getID() + "=" + d.getHealth())
        .containsExactly("a=Healthy", "b=Unhealthy");
  }

  @Test
  void socketNames() {
    assertThat(DevicePlugins.socketName("vfiovm.dev/iommu")).isEqualTo("vfiovm-iommu.sock");
    assertThat(DevicePlugins.socketName("vfiovm.dev/pci-0000-00-03.0")).isEqualTo("vfiovm-pci-0000-00-03.0.sock");
  }
}
