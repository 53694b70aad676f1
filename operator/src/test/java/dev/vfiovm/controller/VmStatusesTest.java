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

  @Test
  void aReconcileErrorIsTheReadyConditionAndKeepsTheRest() {
    VfioVm vm = vm();
    vm.setStatus(VmStatuses.placed(vm, ENTRY, POD, null, T0));
    VfioVmStatus s = VmStatuses.reconcileError(vm, "namespaces \"x\" not found", T0.plusSeconds(5));
    assertThat(s.getMessage()).isEqualTo("reconcile failed, retrying: namespaces \"x\" not found");
    assertThat(s.getPhase()).isEqualTo(Phase.Placed);
    assertThat(s.getHostUid()).isEqualTo(ENTRY.hostUid());
    assertThat(summary(s)).containsEntry(VfioVmStatus.READY, "False/ReconcileError")
        .containsEntry(VfioVmStatus.PLACED, "True/Placed");
    assertThat(VmStatuses.condition(s, VfioVmStatus.READY).getMessage()).contains("not found");
    assertThat(s.getConditions()).extracting(Condition::getType).containsExactly(VfioVmStatus.UID_ASSIGNED,
        VfioVmStatus.PLACED, VfioVmStatus.MEMLOCK_LIMITED, VfioVmStatus.DMA_MAPPED, VfioVmStatus.READY);
    // a VM that never had a status: Pending with the error
    VfioVmStatus first = VmStatuses.reconcileError(vm(), "boom", T0);
    assertThat(first.getPhase()).isEqualTo(Phase.Pending);
    assertThat(summary(first)).containsOnly(Map.entry(VfioVmStatus.READY, "False/ReconcileError"));
  }

  @Test
  void driftLeadsTheMessageAndIsAConditionAfterTheFive() {
    VfioVm vm = vm();
    VfioVmStatus plain = VmStatuses.placed(vm, ENTRY, POD, null, T0);
    assertThat(VmStatuses.withDrift(vm, plain, null, T0)).isSameAs(plain);
    VfioVmStatus s = VmStatuses.withDrift(vm, VmStatuses.placed(vm, ENTRY, POD, null, T0), "spec.cpus was changed", T0);
    assertThat(s.getMessage()).startsWith("spec.cpus was changed; placed on node worker-1");
    assertThat(s.getConditions()).extracting(Condition::getType).endsWith(VfioVmStatus.READY, VmStatuses.SPEC_APPLIED);
    assertThat(summary(s)).containsEntry(VmStatuses.SPEC_APPLIED, "False/SpecChangedAfterPlacement");
  }

  @Test
  void passingStatesWaitForTheSettleTimeAndEverythingElseIsWrittenAtOnce() throws Exception {
    VfioVm vm = vm();
    VfioVmStatus placed = VmStatuses.placed(vm, ENTRY, POD, new PodBuilder().withNewMetadata().withName("p")
        .endMetadata().withNewStatus().withPhase("Pending").endStatus().build(), T0);
    VfioVmStatus podRunning = VmStatuses.fromPod(vm, ENTRY, POD, new PodBuilder().withNewMetadata().withName("p")
        .endMetadata().withNewStatus().withPhase("Running").endStatus().build(), T0);
    VfioVmStatus starting = VmStatuses.fromPod(vm, ENTRY, POD, pod(report(AgentPhase.Starting), null, null), T0);
    NodeAgentReport r = report(AgentPhase.Running);
    r.setPinnedBytes(GI);
    VfioVmStatus running = VmStatuses.fromPod(vm, ENTRY, POD, pod(r, null, null), T0);
    VfioVmStatus failed = VmStatuses.fromPod(vm, ENTRY, POD, pod(report(AgentPhase.Failed), null, null), T0);
    Instant later = T0.plusMillis(300);
    // the kubelet's Running (no report yet) and the agent's Starting after a written Placed: they wait
    assertThat(VmStatuses.settleDelayMillis(placed, podRunning, T0, later, 1000)).isEqualTo(700);
    assertThat(VmStatuses.settleDelayMillis(placed, starting, T0, later, 1000)).isEqualTo(700);
    // ... until the settle time is up since the written status went stale: then a lasting state is written
    assertThat(VmStatuses.settleDelayMillis(placed, starting, T0, T0.plusMillis(1000), 1000)).isZero();
    assertThat(VmStatuses.settleDelayMillis(placed, starting, T0, T0.plusMillis(5000), 1000)).isZero();
    // Running, Failed, the first status, a change of Starting's own contents: at once
    assertThat(VmStatuses.settleDelayMillis(placed, running, T0, later, 1000)).isZero();
    assertThat(VmStatuses.settleDelayMillis(placed, failed, T0, later, 1000)).isZero();
    assertThat(VmStatuses.settleDelayMillis(starting, running, T0, later, 1000)).isZero();
    assertThat(VmStatuses.settleDelayMillis(null, placed, T0, later, 1000)).isZero();
    VfioVmStatus pending = VmStatuses.uidExhausted(vm, "no UID", T0);
    assertThat(VmStatuses.settleDelayMillis(pending, placed, T0, later, 1000)).isZero();
    assertThat(VmStatuses.settleDelayMillis(placed, pending, T0, later, 1000)).isZero();
    // spec drift is reported at once, and so is a status naming another UID or node
    VfioVmStatus drifted = VmStatuses.withDrift(vm, VmStatuses.fromPod(vm, ENTRY, POD,
        pod(report(AgentPhase.Starting), null, null), T0), "spec.memory was changed", T0);
    assertThat(VmStatuses.settleDelayMillis(placed, drifted, T0, later, 1000)).isZero();
    Ledger.Entry elsewhere = new Ledger.Entry(ENTRY.hostUid(), "worker-2", ENTRY.memlockLimitBytes(), ENTRY.devices());
    assertThat(VmStatuses.settleDelayMillis(placed, VmStatuses.placed(vm, elsewhere, POD, null, T0), T0, later, 1000))
        .isZero();
  }

  // ---- hot-plug: the device view and DevicesReady ----

  static final String A = "0000:3b:00.0";
  static final String B = "0000:3b:00.1";

  static Hotplug.Plan plan(List<String> hotplugged, List<Hotplug.Waiting> waiting, List<String> released) {
    return new Hotplug.Plan(ENTRY, hotplugged, List.of(), List.of(), List.of(), released, waiting);
  }

  static DeviceStatus attached(String address, boolean hot) {
    DeviceStatus d = new DeviceStatus(address, "/dev/vfio/devices/vfio0", true);
    d.setState(dev.vfiovm.api.DeviceState.Attached);
    d.setHotplugged(hot);
    return d;
  }

  @Test
  void theDeviceViewMergesTheAgentsReportWithTheOperatorsWaitingAndPluggingEntries() {
    Hotplug.Waiting w = new Hotplug.Waiting("0000:3b:00.2", Hotplug.Wait.InsufficientBudget, "free 0 of budget 4Gi, needs +1Gi");
    var pods = Map.of(B, new VmStatuses.DevicePod("ns/p-dev-b", "Pending", null, false));
    List<DeviceStatus> view = VmStatuses.devices(List.of(attached(A, false)), plan(List.of(B), List.of(w), List.of()),
        List.of(A, B, "0000:3b:00.2"), List.of(A), true, pods, "ns/p");
    assertThat(view).extracting(d -> d.getPciAddress() + " " + d.getState() + " " + d.getReason() + " " + d.isHotplugged())
        .containsExactly(A + " Attached null false", B + " Plugging DevicePlugging true",
            "0000:3b:00.2 Waiting InsufficientBudget false");
    Condition ready = VmStatuses.devicesReady(view, List.of(A, B, "0000:3b:00.2"));
    assertThat(ready.getStatus()).isEqualTo("False");
    assertThat(ready.getReason()).isEqualTo("InsufficientBudget");
    assertThat(ready.getMessage()).contains("free 0 of budget 4Gi, needs +1Gi");

    List<DeviceStatus> all = VmStatuses.devices(List.of(attached(A, false), attached(B, true)),
        plan(List.of(B), List.of(), List.of()), List.of(A, B), List.of(A), true, Map.of(), "ns/p");
    assertThat(VmStatuses.devicesReady(all, List.of(A, B)).getStatus()).isEqualTo("True");
  }

  @Test
  void aFailedAttachmentPodFailsItsDeviceAndLeavingDevicesSayWhatTheyWaitFor() {
    var failed = Map.of(B, new VmStatuses.DevicePod("ns/p-dev-b", "Failed", "EBUSY: device in use\n", false));
    List<DeviceStatus> view = VmStatuses.devices(List.of(attached(A, false)), plan(List.of(B), List.of(), List.of()),
        List.of(A, B), List.of(A), true, failed, "ns/p");
    assertThat(view.get(1).getState()).isEqualTo(dev.vfiovm.api.DeviceState.Failed);
    assertThat(view.get(1).getMessage()).contains("EBUSY: device in use");
    assertThat(VmStatuses.devicesReady(view, List.of(A, B)).getReason()).isEqualTo("DevicePlugFailed");

    // A (boot) removed and detached, B (hot-plugged) removed and still reported: A held by the node pod, B leaving
    List<DeviceStatus> leaving = VmStatuses.devices(List.of(attached(B, true)), plan(List.of(B), List.of(), List.of()),
        List.of(), List.of(A), true, Map.of(), "ns/p");
    assertThat(leaving).extracting(d -> d.getPciAddress() + " " + d.getState() + " " + d.getReason())
        .containsExactly(A + " null DeviceHeldByNodePod", B + " Unplugging DeviceUnplugging");
    assertThat(leaving.get(0).getMessage()).contains("allocated to node pod ns/p until it ends");
    assertThat(VmStatuses.devicesReady(leaving, List.of()).getReason()).isEqualTo("DeviceUnplugging");
    // released: gone from the view
    assertThat(VmStatuses.devices(List.of(), plan(List.of(), List.of(), List.of(B)), List.of(), List.of(), true,
        Map.of(), "ns/p")).isEmpty();
  }
}
