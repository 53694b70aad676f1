package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.BootSpec;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class UidClaimsTest {
  static final long GI = 1L << 30;

  static VfioVm vm(String uid) {
    VfioVm vm = ClusterTestSupport.vm("team-a", "db", "1Gi", Map.of("zone", "a"), "0000:3b:00.0");
    vm.getMetadata().setUid(uid);
    return vm;
  }

  @Test
  void aClaimKeepsItsHotPluggedDevicesAndTheLimitItWasPlacedWith() {
    VfioVm vm = vm("u-1");
    Ledger.Entry placed = new Ledger.Entry(1879048200L, "worker-1", 2 * GI, List.of("0000:3b:00.0"));
    UidClaims.Claim claim = UidClaims.of(vm, placed);
    assertThat(claim.hotplugged()).isEmpty();
    assertThat(claim.bootLimitBytes()).isEqualTo(2 * GI);
    Ledger.Entry plugged = new Ledger.Entry(1879048200L, "worker-1", 3 * GI, List.of("0000:3b:00.0", "0000:3b:00.1"));
    Lease lease = UidClaims.toLease(claim.withHotplug(plugged, List.of("0000:3b:00.1")), "vfiovm-system");
    UidClaims.Claim back = UidClaims.parse(Serialization.unmarshal(Serialization.asJson(lease), Lease.class));
    // what a restarted operator rebuilds: the entry with the raised limit, the device as hot-plugged
    assertThat(back.entry()).isEqualTo(plugged);
    assertThat(back.hotplugged()).containsExactly("0000:3b:00.1");
    assertThat(back.bootLimitBytes()).isEqualTo(2 * GI);
    assertThat(back.bootDevices()).containsExactly("0000:3b:00.0");
  }

  @Test
  void aClaimSurvivesItsLeaseAndNamesItsVmByMetadataUid() {
    VfioVm vm = vm("u-1");
    Ledger.Entry entry = new Ledger.Entry(1879048200L, "worker-1", 2 * GI, List.of("0000:3b:00.0"));
    Lease lease = UidClaims.toLease(UidClaims.of(vm, entry), "vfiovm-system");
    assertThat(lease.getMetadata().getName()).isEqualTo("vfiovm-uid-1879048200");
    assertThat(lease.getMetadata().getNamespace()).isEqualTo("vfiovm-system");
    // through JSON, as the API server hands it back
    UidClaims.Claim claim = UidClaims.parse(Serialization.unmarshal(Serialization.asJson(lease), Lease.class));
    assertThat(claim.entry()).isEqualTo(entry);
    assertThat(claim.vmKey()).isEqualTo("team-a/db");
    assertThat(claim.spec().getMemory()).isEqualTo("1Gi");
    assertThat(claim.spec().getNodeSelector()).containsEntry("zone", "a");
    assertThat(claim.of(vm)).isTrue();
    // a re-created VM of the same name is another VM
    assertThat(claim.of(vm("u-2"))).isFalse();
  }

  @Test
  void whatIsNoClaimParsesToNull() {
    Lease election = new io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder()
        .withNewMetadata().withName("vfiovm-operator").endMetadata().build();
    assertThat(UidClaims.parse(election)).isNull();
    Lease broken = UidClaims.toLease(UidClaims.of(vm("u"), new Ledger.Entry(5, "n", GI, List.of())), "ns");
    broken.getMetadata().getAnnotations().put(UidClaims.ANNOTATION_LIMIT, "lots");
    assertThat(UidClaims.parse(broken)).isNull();
  }

  @Test
  void theHolderReadWithoutJsonAgreesWithTheFullParse() {
    VfioVm mine = vm("u-1");
    Lease lease = Serialization.unmarshal(Serialization.asJson(UidClaims.toLease(
        UidClaims.of(mine, new Ledger.Entry(77, "n", GI, List.of())), "ns")), Lease.class);
    assertThat(UidClaims.uidHeldByOther(lease, mine)).isNull();
    assertThat(UidClaims.uidHeldByOther(lease, vm("u-2"))).isEqualTo(77L);
    VfioVm other = ClusterTestSupport.vm("team-b", "db", "1Gi", Map.of(), "0000:3b:00.0");
    other.getMetadata().setUid("u-1");
    assertThat(UidClaims.uidHeldByOther(lease, other)).isEqualTo(77L);
    Lease election = new io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder()
        .withNewMetadata().withName("vfiovm-operator").endMetadata().build();
    assertThat(UidClaims.uidHeldByOther(election, mine)).isNull();
    lease.getMetadata().getAnnotations().put(UidClaims.ANNOTATION_LIMIT, "lots");
    assertThat(UidClaims.uidHeldByOther(lease, vm("u-2"))).isNull();
  }

  @Test
  void everyChangedFieldIsNamedAndDefaultsAreNoChange() {
    VfioVmSpec placed = vm("u").getSpec();
    VfioVmSpec live = Serialization.unmarshal(Serialization.asJson(placed), VfioVmSpec.class);
    assertThat(UidClaims.changedFields(placed, live)).isEmpty();
    live.setNodeName("");
    assertThat(UidClaims.changedFields(placed, live)).isEmpty();
    live.setCpus(2);
    live.setBoot(new BootSpec());
    live.getBoot().setKernel("/boot/vmlinuz");
    live.setDevices(List.of());
    assertThat(UidClaims.changedFields(placed, live)).containsExactly("spec.boot", "spec.cpus", "spec.devices");
  }

  @Test
  void aHotplugChangeWritesItsAnnotationsOverTheLeasesAndAnEmptiedListReplacesTheLastOne() {
    UidClaims.Claim placed = new UidClaims.Claim("vms/a", "u-1", 1879048200L, "n1", 3L << 30, List.of("0000:3b:00.0"),
        null);
    UidClaims.Claim plugged = placed.withHotplug(
        new Ledger.Entry(1879048200L, "n1", 4L << 30, List.of("0000:3b:00.0", "0000:3b:00.1")), List.of("0000:3b:00.1"));
    Map<String, String> other = Map.of("kept", "yes", UidClaims.ANNOTATION_LIMIT, "1");
    Map<String, String> once = UidClaims.hotplugAnnotations(other, plugged, "vfiovm-system");
    assertThat(once).containsEntry("kept", "yes").containsEntry(UidClaims.ANNOTATION_LIMIT, Long.toString(4L << 30))
        .containsEntry(UidClaims.ANNOTATION_HOTPLUGGED, "[\"0000:3b:00.1\"]")
        .containsEntry(UidClaims.ANNOTATION_BOOT_LIMIT, Long.toString(3L << 30));
    UidClaims.Claim released = plugged.withHotplug(new Ledger.Entry(1879048200L, "n1", 3L << 30, List.of("0000:3b:00.0")),
        List.of());
    assertThat(UidClaims.hotplugAnnotations(once, released, "vfiovm-system"))
        .containsEntry(UidClaims.ANNOTATION_HOTPLUGGED, "[]").containsEntry(UidClaims.ANNOTATION_LIMIT, Long.toString(3L << 30));
  }
}
