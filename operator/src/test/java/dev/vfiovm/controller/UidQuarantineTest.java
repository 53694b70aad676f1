package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import io.fabric8.kubernetes.api.model.ContainerStatusBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.List;
import org.junit.jupiter.api.Test;

class UidQuarantineTest {
  static final UidQuarantine.Held HELD =
      new UidQuarantine.Held(1879048193L, "n1", "2026-12-01T14:00:00Z", "ns/a", "its node pod disappeared");

  static UidAudit audit(String at, Long... live) {
    return new UidAudit(at, 1879048192L, 65536, List.of(live));
  }

  @Test
  void anAuditAfterTheFreeWithoutTheUidEndsTheQuarantine() {
    assertThat(UidQuarantine.proven(HELD, "n1", audit("2026-12-01T14:00:15Z"))).isTrue();
    assertThat(UidQuarantine.proven(HELD, "n1", audit("2026-12-01T14:00:15Z", 1879048194L))).isTrue();
  }

  @Test
  void nothingElseEndsIt() {
    assertThat(UidQuarantine.proven(HELD, "n1", audit("2026-12-01T14:00:15Z", 1879048193L)))
        .as("the UID still runs").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n1", audit("2026-12-01T14:00:00Z"))).as("not after the free").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n1", audit("2026-12-01T13:59:59Z"))).as("older").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n2", audit("2026-12-01T14:00:15Z"))).as("another node").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n1", null)).as("no audit").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n1", new UidAudit("2026-12-01T14:00:15Z", 1000, 10, List.of())))
        .as("an audit of another range did not look at the UID").isFalse();
    assertThat(UidQuarantine.proven(HELD, "n1", audit("yesterday"))).as("unreadable time").isFalse();
  }

  @Test
  void releaseTakesOnlyWhatTheNodesAuditProvesAndALaterFreeNeedsALaterScan() {
    UidQuarantine q = new UidQuarantine();
    q.add(HELD);
    q.add(new UidQuarantine.Held(1879048194L, "n1", "2026-12-01T14:00:00Z", "ns/b", "x"));
    q.add(new UidQuarantine.Held(1879048193L, "n2", "2026-12-01T14:00:00Z", "ns/c", "node gone"));
    assertThat(q.release("n1", audit("2026-12-01T14:00:15Z", 1879048194L))).containsExactly(HELD);
    assertThat(q.uids()).containsExactly(1879048193L, 1879048194L); // n2 still holds 193
    q.add(new UidQuarantine.Held(1879048194L, "n1", "2026-12-01T14:01:00Z", "ns/b2", "again"));
    assertThat(q.release("n1", audit("2026-12-01T14:00:30Z"))).as("older than the latest free").isEmpty();
    assertThat(q.release("n1", audit("2026-12-01T14:01:15Z"))).hasSize(1);
    assertThat(q.release("n2", audit("2026-12-01T14:01:15Z"))).hasSize(1);
    assertThat(q.uids()).isEmpty();
  }

  @Test
  void theStateRoundTripsAsJson() {
    UidQuarantine.State state = new UidQuarantine.State(1879048200L, List.of(HELD));
    assertThat(UidQuarantine.State.fromJson(state.toJson())).isEqualTo(state);
    assertThat(UidQuarantine.State.fromJson("{}").quarantined()).isEmpty();
  }

  @Test
  void theAuditRecordReadsTheNodeDaemonsAnnotation() {
    UidAudit a = UidAudit.fromJson("{\"scannedAt\":\"2026-12-01T14:00:00Z\",\"uidRangeStart\":1879048192,"
        + "\"uidRangeSize\":65536,\"liveUids\":[1879048193],\"later\":true}");
    assertThat(a).isEqualTo(audit("2026-12-01T14:00:00Z", 1879048193L));
    assertThat(UidAudit.fromJson(a.toJson())).isEqualTo(a);
    assertThat(UidAudit.ANNOTATION).isEqualTo("vfiovm.dev/uid-audit");
  }

  // --- when is a free unproven

  static Pod pod(String phase, String agentState, NodeAgentReport.AgentPhase report) {
    PodBuilder b = new PodBuilder().withNewMetadata().withName("p").endMetadata();
    if (report != null) {
      NodeAgentReport r = new NodeAgentReport();
      r.setPhase(report);
      b.editMetadata().addToAnnotations(NodeAgentReport.POD_ANNOTATION, Serialization.asJson(r)).endMetadata();
    }
    if (agentState != null) {
      var cs = new ContainerStatusBuilder().withName(NodePodShape.CONTAINER);
      switch (agentState) {
        case "running" -> cs.withNewState().withNewRunning().endRunning().endState();
        case "terminated" -> cs.withNewState().withNewTerminated().withExitCode(0).endTerminated().endState();
        default -> cs.withNewState().withNewWaiting().withReason("ContainerCreating").endWaiting().endState();
      }
      b.withNewStatus().withPhase(phase).withContainerStatuses(cs.build()).endStatus();
    }
    return b.build();
  }

  @Test
  void aPodSeenWithEveryContainerTerminatedIsProof() {
    assertThat(UidQuarantine.unprovenFree(pod("Failed", "terminated", NodeAgentReport.AgentPhase.Running),
        Phase.Running, true)).isNull();
    assertThat(UidQuarantine.unprovenFree(pod("Running", "terminated", null), Phase.Running, false)).isNull();
  }

  @Test
  void aPodGoneWhileTheVmMayHaveRunIsNoProof() {
    assertThat(UidQuarantine.unprovenFree(pod("Running", "running", NodeAgentReport.AgentPhase.Running),
        Phase.Running, true)).contains("disappeared");
    assertThat(UidQuarantine.unprovenFree(pod(null, null, NodeAgentReport.AgentPhase.Starting), Phase.Placed, true))
        .as("the agent's report says it started the VM").isNotNull();
    assertThat(UidQuarantine.unprovenFree(pod("Running", "running", null), Phase.Placed, true))
        .as("a container ran as the UID").isNotNull();
    assertThat(UidQuarantine.unprovenFree(null, Phase.Starting, true)).isNotNull();
    assertThat(UidQuarantine.unprovenFree(null, Phase.Terminating, true))
        .as("deletion began before a restart: unknown").isNotNull();
    assertThat(UidQuarantine.unprovenFree(pod(null, null, null), Phase.Placed, false))
        .as("its node is gone").contains("node is gone");
  }

  @Test
  void aVmThatNeverRanFreesItsUidAtOnce() {
    assertThat(UidQuarantine.unprovenFree(pod(null, null, null), Phase.Placed, true)).isNull();
    assertThat(UidQuarantine.unprovenFree(pod("Pending", "waiting", null), Phase.Placed, true)).isNull();
    assertThat(UidQuarantine.unprovenFree(null, Phase.Pending, false)).isNull();
  }
}
