package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class VmStatusesTest {
  static final long GI = 1L << 30;
  static final Instant T0 = Instant.parse("2026-01-01T00:00:00Z");
  static final Ledger.Entry ENTRY = new Ledger.Entry(1879048192L, "worker-1", 2 * GI, List.of("0000:3b:00.0"));
  static final String POD = "vfiovm-system/vfiovm-db-0123456789";

  static VfioVm vm() {
    VfioVm vm = ClusterTestSupport.vm("team-a", "db", "1Gi", Map.of(), "0000:3b:00.0");
    vm.getMetadata().setGeneration(3L);
    return vm;
  }

  static Pod pod(NodeAgentReport report, String terminatedMessage, Integer exitCode) throws Exception {
    PodBuilder b = new PodBuilder().withNewMetadata().withName("p").endMetadata();
    if (report != null) {
      b.editMetadata().withAnnotations(Map.of(NodeAgentReport.POD_ANNOTATION, new ObjectMapper().writeValueAsString(report)))
          .endMetadata();
    }
    if (exitCode != null) {
      b.withNewStatus().addNewContainerStatus().withName(NodePodShape.CONTAINER).withNewState().withNewTerminated()
          .withExitCode(exitCode).withReason("Error").withMessage(terminatedMessage).endTerminated().endState()
          .endContainerStatus().endStatus();
    }
    return b.build();
  }

  static NodeAgentReport report(AgentPhase phase) {
    NodeAgentReport r = new NodeAgentReport();
    r.setPhase(phase);
    r.setHostUid(ENTRY.hostUid());
    r.setMemlockLimitBytes(2 * GI);
    r.setDmaBackend("Iommufd");
    r.setAccounting("PerProcess");
    r.setVmPid(4242L);
    return r;
  }

  static Map<String, String> summary(VfioVmStatus s) {
    return s.getConditions().stream().collect(java.util.stream.Collectors.toMap(
        Condition::getType, c -> c.getStatus() + "/" + c.getReason()));
  }

  @Test
  void aRunningReportSetsPhasePinnedBytesAndTheThreeConditions() throws Exception {
    NodeAgentReport running = report(AgentPhase.Running);
    running.setPinnedBytes(GI);
    running.setDevices(List.of(new DeviceStatus("0000:3b:00.0", "/dev/vfio/devices/vfio0", true)));
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pod(running, null, null), T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Running);
    assertThat(s.getPinnedBytes()).isEqualTo(GI);
    assertThat(s.getDmaBackend()).isEqualTo("Iommufd");
    assertThat(s.getAccounting()).isEqualTo("PerProcess");
    assertThat(s.getDevices()).extracting(DeviceStatus::getCdev).containsExactly("/dev/vfio/devices/vfio0");
    assertThat(s.getHostUid()).isEqualTo(ENTRY.hostUid());
    assertThat(s.getNodeName()).isEqualTo("worker-1");
    assertThat(s.getPodName()).isEqualTo(POD);
    assertThat(s.getObservedGeneration()).isEqualTo(3L);
    assertThat(s.getConditions()).extracting(Condition::getType).containsExactly(
        "UidAssigned", "Placed", "MemlockLimited", "DmaMapped", "Ready");
    assertThat(s.getConditions()).allSatisfy(c -> {
      assertThat(c.getStatus()).isEqualTo("True");
      assertThat(c.getReason()).isNotBlank();
      assertThat(c.getMessage()).isNotBlank();
      assertThat(c.getObservedGeneration()).isEqualTo(3L);
    });
    assertThat(VmStatuses.condition(s, "MemlockLimited").getMessage()).contains("2Gi").contains("4242");
  }

  @Test
  void startingAndNoReportYet() throws Exception {
    assertThat(VmStatuses.fromPod(vm(), ENTRY, POD, pod(report(AgentPhase.Starting), null, null), T0).getPhase())
        .isEqualTo(Phase.Starting);
    VfioVmStatus waiting = VmStatuses.fromPod(vm(), ENTRY, POD, pod(null, null, null), T0);
    assertThat(waiting.getPhase()).isEqualTo(Phase.Placed);
    assertThat(summary(waiting)).containsEntry("Ready", "False/AgentNotReported").containsEntry("Placed", "True/Placed");
  }

  @Test
  void aFailedReportCarriesTheErrnoAsReasonAndTheMessage() throws Exception {
    NodeAgentReport failed = report(AgentPhase.Failed);
    failed.setError("ENOMEM");
    failed.setMessage("pin of 1073741824 bytes exceeds RLIMIT_MEMLOCK 8388608");
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pod(failed, null, null), T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Failed);
    assertThat(summary(s)).containsEntry("DmaMapped", "False/ENOMEM").containsEntry("Ready", "False/ENOMEM")
        .containsEntry("MemlockLimited", "True/LimitApplied");
    assertThat(s.getMessage()).contains("ENOMEM").contains("8388608");
  }

  @Test
  void aDeadAgentsTerminationMessageIsItsLastWord() throws Exception {
    NodeAgentReport last = report(AgentPhase.Failed);
    last.setError("EPERM");
    last.setMessage("IOMMU_OPTION_RLIMIT_MODE needs CAP_SYS_RESOURCE");
    String message = new ObjectMapper().writeValueAsString(last);
    // the annotation still says Running: the termination message (written later) wins
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pod(report(AgentPhase.Running), message, 1), T0);
    assertThat(summary(s)).containsEntry("Ready", "False/EPERM");
  }

  @Test
  void anAgentThatExitsWithoutAFinalReportFailsTheVm() throws Exception {
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pod(report(AgentPhase.Running), "", 137), T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Failed);
    assertThat(summary(s)).containsEntry("Ready", "False/AgentExited");
    assertThat(s.getMessage()).contains("exited with code 137").contains("after reporting Running");
    VfioVmStatus silent = VmStatuses.fromPod(vm(), ENTRY, POD, pod(null, "garbage", 2), T0);
    assertThat(silent.getMessage()).contains("without a report");
  }

  @Test
  void aCleanStopIsStoppedAndSaysHowToRestart() throws Exception {
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pod(report(AgentPhase.Stopped), null, null), T0);
    assertThat(s.getPhase()).as("a guest that powered off is Stopped, not Failed").isEqualTo(Phase.Stopped);
    assertThat(s.getMessage()).contains("re-create");
  }

  @Test
  void refusalsSayWhatToChange() {
    Placement.Decision budget = new Placement.Decision(null, Placement.Reason.InsufficientBudget, "fits no node");
    VfioVmStatus pending = VmStatuses.unplaced(vm(), new Ledger.Entry(7, null, 2 * GI, List.of()), budget, T0);
    assertThat(pending.getPhase()).isEqualTo(Phase.Pending);
    assertThat(pending.getHostUid()).isEqualTo(7);
    assertThat(pending.getNodeName()).isNull();
    assertThat(summary(pending)).containsEntry("UidAssigned", "True/Assigned").containsEntry("Placed", "False/InsufficientBudget");
    Placement.Decision conflict = new Placement.Decision(null, Placement.Reason.DeviceConflict, "held by ns/x");
    assertThat(VmStatuses.unplaced(vm(), new Ledger.Entry(7, null, 2 * GI, List.of()), conflict, T0).getPhase())
        .isEqualTo(Phase.Failed);
    VfioVmStatus exhausted = VmStatuses.uidExhausted(vm(), "all 2 host UIDs are held", T0);
    assertThat(summary(exhausted)).containsEntry("UidAssigned", "False/UidRangeExhausted");
    VfioVmStatus invalid = VmStatuses.invalid(vm(),
        new SpecValidation.Result(null, List.of(new SpecValidation.Violation("spec.memory", "use 4Ki multiples"))), T0);
    assertThat(invalid.getPhase()).isEqualTo(Phase.Failed);
    assertThat(invalid.getHostUid()).isNull();
    assertThat(invalid.getMessage()).contains("spec.memory: use 4Ki multiples");
  }

  @Test
  void aConditionKeepsItsTransitionTimeWhileItsStatusHolds() throws Exception {
    VfioVm vm = vm();
    NodeAgentReport running = report(AgentPhase.Running);
    VfioVmStatus first = VmStatuses.fromPod(vm, ENTRY, POD, pod(running, null, null), T0);
    vm.setStatus(first);
    running.setPinnedBytes(GI);
    VfioVmStatus later = VmStatuses.fromPod(vm, ENTRY, POD, pod(running, null, null), T0.plusSeconds(60));
    assertThat(VmStatuses.condition(later, "Ready").getLastTransitionTime()).isEqualTo("2026-01-01T00:00:00Z");
    NodeAgentReport failed = report(AgentPhase.Failed);
    vm.setStatus(later);
    VfioVmStatus broke = VmStatuses.fromPod(vm, ENTRY, POD, pod(failed, null, null), T0.plusSeconds(120));
    assertThat(VmStatuses.condition(broke, "Ready").getLastTransitionTime()).isEqualTo("2026-01-01T00:02:00Z");
    assertThat(VmStatuses.condition(broke, "Ready").getReason()).isEqualTo("AgentFailed");
  }

  @Test
  void terminatingKeepsWhatTheAgentLastReported() throws Exception {
    VfioVm vm = vm();
    NodeAgentReport running = report(AgentPhase.Running);
    running.setPinnedBytes(GI);
    vm.setStatus(VmStatuses.fromPod(vm, ENTRY, POD, pod(running, null, null), T0));
    VfioVmStatus s = VmStatuses.terminating(vm, ENTRY, POD, T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Terminating);
    assertThat(s.getPinnedBytes()).isEqualTo(GI);
    assertThat(s.getHostUid()).isEqualTo(ENTRY.hostUid());
    assertThat(summary(s)).containsEntry("Ready", "False/Terminating").containsEntry("DmaMapped", "True/Mapped");
  }

  @Test
  void aPodTheKubeletRejectsFailsTheVmWithTheKubeletsWords() {
    Pod rejected = new PodBuilder().withNewMetadata().withName("p").endMetadata()
        .withNewStatus().withPhase("Failed").withReason("OutOfmemory")
        .withMessage("Node didn't have enough resource: memory").endStatus().build();
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, rejected, T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Failed);
    assertThat(summary(s)).containsEntry("Ready", "False/OutOfmemory");
    assertThat(s.getMessage()).contains("enough resource: memory");
  }

  @Test
  void aPodStuckBeforeStartSaysWhy() {
    Pod pulling = new PodBuilder().withNewMetadata().withName("p").endMetadata()
        .withNewStatus().withPhase("Pending").addNewContainerStatus().withName(NodePodShape.CONTAINER)
        .withNewState().withNewWaiting().withReason("ImagePullBackOff").withMessage("no such image").endWaiting()
        .endState().endContainerStatus().endStatus().build();
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pulling, T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Placed);
    assertThat(s.getMessage()).contains("Pending (ImagePullBackOff: no such image)");
  }

  @Test
  void theConsoleIsNamedOnceTheNodePodExistsAndKeptWhileTerminating() throws Exception {
    assertThat(VmStatuses.placed(vm(), ENTRY, POD, null, T0).getConsole()).isNull(); // no pod yet
    SpecValidation.Plan plan = SpecValidation.validate(vm().getSpec(), GI).plan();
    Pod created = NodePodShape.build(vm(), ENTRY.hostUid(), ENTRY.node(), plan,
        OperatorSettings.defaults("vfiovm-system", "example/vfiovm:1"));
    String logs = "kubectl logs -n vfiovm-system " + created.getMetadata().getName() + " -c node-agent";
    String key = "vfiovm-system/" + created.getMetadata().getName();
    assertThat(VmStatuses.placed(vm(), ENTRY, key, created, T0).getConsole()).isEqualTo(logs);
    created.getMetadata().setAnnotations(Map.of(NodeAgentReport.POD_ANNOTATION,
        new ObjectMapper().writeValueAsString(report(AgentPhase.Running))));
    VfioVmStatus running = VmStatuses.fromPod(vm(), ENTRY, key, created, T0);
    assertThat(running.getConsole()).isEqualTo(logs);
    VfioVm deleting = vm();
    deleting.setStatus(running);
    assertThat(VmStatuses.terminating(deleting, ENTRY, key, T0).getConsole()).isEqualTo(logs);

    VfioVm quiet = vm();
    quiet.getSpec().setConsole(dev.vfiovm.api.Console.None);
    Pod silent = NodePodShape.build(quiet, ENTRY.hostUid(), ENTRY.node(),
        SpecValidation.validate(quiet.getSpec(), GI).plan(), OperatorSettings.defaults("vfiovm-system", "x:1"));
    assertThat(VmStatuses.placed(quiet, ENTRY, key, silent, T0).getConsole()).isEqualTo("none");
  }

  @Test
  void aBootImageThatCannotBePulledIsNamedWhileThePodWaits() {
    Pod pulling = new PodBuilder().withNewMetadata().withName("p").endMetadata()
        .withNewStatus().withPhase("Pending")
        .addNewInitContainerStatus().withName("vfiovm-tools").withNewState().withNewTerminated().withExitCode(0)
        .endTerminated().endState().endInitContainerStatus()
        .addNewInitContainerStatus().withName("boot-kernel").withNewState().withNewWaiting()
        .withReason("ErrImagePull").withMessage("tenant.example/guest:1: not found").endWaiting().endState()
        .endInitContainerStatus()
        .addNewContainerStatus().withName(NodePodShape.CONTAINER).withNewState().withNewWaiting()
        .withReason("PodInitializing").endWaiting().endState().endContainerStatus()
        .endStatus().build();
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, pulling, T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Placed);
    assertThat(s.getMessage()).contains("(init container boot-kernel: ErrImagePull: tenant.example/guest:1: not found)");
  }

  @Test
  void aBootFileMissingFromTheImageFailsTheVmWithCpsWords() {
    Pod failed = new PodBuilder().withNewMetadata().withName("p").endMetadata()
        .withNewStatus().withPhase("Failed")
        .addNewInitContainerStatus().withName("boot-initrd").withNewState().withNewTerminated().withExitCode(1)
        .withMessage("cp: can't stat '/boot/initrd.img': No such file or directory\n").endTerminated().endState()
        .endInitContainerStatus()
        .endStatus().build();
    VfioVmStatus s = VmStatuses.fromPod(vm(), ENTRY, POD, failed, T0);
    assertThat(s.getPhase()).isEqualTo(Phase.Failed);
    assertThat(summary(s)).containsEntry("Ready", "False/InitContainerFailed");
    assertThat(s.getMessage()).contains("init container boot-initrd exited with code 1: cp: can't stat "
        + "'/boot/initrd.img': No such file or directory;");
  }
}
