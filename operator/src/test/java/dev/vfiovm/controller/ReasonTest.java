package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class ReasonTest {
  @ParameterizedTest
  @EnumSource(Placement.Reason.class)
  void everyPlacementReasonHasAReasonOfTheSameName(Placement.Reason placement) {
    assertThat(Reason.of(placement).name()).isEqualTo(placement.name());
    assertThat(Reason.of(placement).refusal).isTrue();
  }

  @Test
  void theNormalFlowIsNoRefusalAndEverythingElseIs() {
    assertThat(Arrays.stream(Reason.values()).filter(r -> !r.refusal).map(Enum::name))
        .containsExactlyInAnyOrder("Assigned", "Placed", "NotStarted", "WaitingForUid", "WaitingForPlacement", "AgentNotReported", "Starting",
            "Running", "LimitApplied", "Mapped", "AgentStopped", "Terminating", "NodePodCreated", "DeletingNodePod",
            "Released", "DevicesAttached", "DevicePlugging", "DeviceAttached", "DeviceUnplugging", "DeviceUnplugged",
            "DeviceHeldByNodePod", "VmNotRunning");
    // every reason a device waits for is one of the vocabulary
    for (Hotplug.Wait w : Hotplug.Wait.values()) {
      assertThat(Reason.valueOf(w.name()).name()).isEqualTo(w.name());
    }
    // what the agent or the kubelet report is no value here, and held back
    assertThat(Reason.isRefusal("ENOMEM")).isTrue();
    assertThat(Reason.isRefusal("OutOfmemory")).isTrue();
    assertThat(Reason.isRefusal("Running")).isFalse();
    assertThat(Reason.isRefusal("ReconcileError")).isTrue();
    assertThat(Reason.isRefusal(null)).isFalse();
  }
}
