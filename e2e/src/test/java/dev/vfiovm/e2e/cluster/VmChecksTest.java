package dev.vfiovm.e2e.cluster;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.util.List;
import org.junit.jupiter.api.Test;

class VmChecksTest {
  static VfioVm vm(String name, Long uid) {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace("ns").withName(name).build());
    if (uid != null) {
      VfioVmStatus status = new VfioVmStatus();
      status.setHostUid(uid);
      status.setPhase(Phase.Pending);
      status.setConditions(
          List.of(new ConditionBuilder().withType("Placed").withStatus("False").withReason("InsufficientBudget")
              .withMessage("memlock limit 2Mi does not fit").build()));
      vm.setStatus(status);
    }
    return vm;
  }

  @Test
  void distinctUidsNeedEveryVmToHaveOne() {
    assertThat(VmChecks.distinctHostUids(List.of(vm("a", 1L), vm("b", 2L)))).isTrue();
    assertThat(VmChecks.distinctHostUids(List.of(vm("a", 1L), vm("b", 1L)))).isFalse();
    assertThat(VmChecks.distinctHostUids(List.of(vm("a", 1L), vm("b", null)))).isFalse();
  }

  @Test
  void conditionsAndDescriptionsForMessages() {
    VfioVm pending = vm("c", 7L);

    assertThat(VmChecks.condition(pending, "Placed")).get().extracting("reason").isEqualTo("InsufficientBudget");
    assertThat(VmChecks.condition(pending, "Ready")).isEmpty();
    assertThat(VmChecks.condition(vm("d", null), "Placed")).isEmpty();
    assertThat(VmChecks.describe(pending))
        .contains("ns/c", "phase=Pending", "uid=7", "Placed=False InsufficientBudget: memlock limit 2Mi");
    assertThat(VmChecks.describe(null)).isEqualTo("(gone)");
  }
}
