package dev.vfiovm.e2e.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.marcnuri.helm.Helm;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.e2e.chart.ChartRendering;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Fault suite, node level, on the real local node (the test runs on the node's host and reads its /proc): (1) a
 * running VM's node pod deleted by someone else (a plain graceful delete through the API, not the operator's);
 * (2) a running VM's node agent killed with SIGKILL. Each VM must end Running again or Failed with a reason -
 * never stuck Starting - and the old processes of the VM's host UID must be gone (no pins of the old VM left:
 * back to the baseline); after the VM is deleted no process of its UID remains.
 */
class NodeFaultsE2E {
  @BeforeAll
  static void installChart() {
    VfioVmClusterE2E.installOnLocalNode(install -> install, "vfiovm-e2e-f");
  }

  @AfterAll
  static void uninstall() {
    VfioVmClusterE2E.cleanUp();
  }

  @Test
  void aNodePodDeletedBySomeoneElseEndsRunningOrFailedWithAReasonAndLeavesNoProcess() {
    var client = VfioVmClusterE2E.client;
    var settings = VfioVmClusterE2E.settings;
    String node = VfioVmClusterE2E.seedNode().getMetadata().getName();
    VfioVm vm = VfioVmClusterE2E.create("deleted-pod", node);
    VfioVm running = VfioVmClusterE2E.awaitPhase(List.of(vm), Phase.Running).get(0);
    long uid = running.getStatus().getHostUid();
    List<Long> before = UidQuarantineE2E.pidsWithUid(uid);
    assertThat(before).as("the VM's processes run as host UID %d", uid).isNotEmpty();
    Pod pod = VfioVmClusterE2E.nodePod(running);

    client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName()).delete();

    await("the old node pod gone").atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .until(() -> client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
            .get() == null || !pod.getMetadata().getUid().equals(client.pods().inNamespace(pod.getMetadata().getNamespace())
                .withName(pod.getMetadata().getName()).get().getMetadata().getUid()));
    VfioVm end = await("Running with a new node pod, or Failed with a reason (never stuck Starting)")
        .atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .until(() -> VfioVmClusterE2E.get(vm), v -> v != null && v.getStatus() != null
            && (v.getStatus().getPhase() == Phase.Failed
                || (v.getStatus().getPhase() == Phase.Running && VfioVmClusterE2E.nodePods(v).stream()
                    .anyMatch(p -> !p.getMetadata().getUid().equals(pod.getMetadata().getUid())))));
    System.out.printf("node pod %s deleted by someone else: the VM ended %s (%s)%n", pod.getMetadata().getName(),
        end.getStatus().getPhase(), end.getStatus().getMessage());
    if (end.getStatus().getPhase() == Phase.Failed) {
      Condition ready = end.getStatus().getConditions().stream().filter(c -> VfioVmStatus.READY.equals(c.getType()))
          .findFirst().orElseThrow();
      assertThat(ready.getReason()).as("Failed with a reason").isNotBlank();
      await("no process of host UID " + uid + " left").atMost(settings.timeout())
          .until(() -> UidQuarantineE2E.pidsWithUid(uid).isEmpty());
    } else {
      await("the old pod's processes gone").atMost(settings.timeout())
          .until(() -> UidQuarantineE2E.pidsWithUid(uid).stream().noneMatch(before::contains));
    }
    VfioVmClusterE2E.deleteAndAwaitReleased(List.of(end));
    await("no process of host UID " + uid + " after the delete (pins back to the baseline)").atMost(settings.timeout())
        .until(() -> UidQuarantineE2E.pidsWithUid(end.getStatus().getHostUid()).isEmpty());
  }

  @Test
  void aNodeAgentKilledEndsRunningOrFailedWithAReasonAndLeavesNoStrayProcess() throws Exception {
    var settings = VfioVmClusterE2E.settings;
    String node = VfioVmClusterE2E.seedNode().getMetadata().getName();
    VfioVm vm = VfioVmClusterE2E.create("killed-agent", node);
    VfioVm running = VfioVmClusterE2E.awaitPhase(List.of(vm), Phase.Running).get(0);
    long uid = running.getStatus().getHostUid();
    List<Long> before = UidQuarantineE2E.pidsWithUid(uid);
    assertThat(before).as("the VM's processes run as host UID %d", uid).isNotEmpty();
    List<ProcessHandle> agents = ProcessHandle.allProcesses()
        .filter(p -> p.info().arguments().map(a -> java.util.Arrays.asList(a).contains("node-agent")
            && java.util.Arrays.asList(a).contains(Long.toString(uid))).orElse(false))
        .toList();
    assertThat(agents).as("the node agent of host UID %d on this host", uid).hasSize(1);
    agents.get(0).destroyForcibly();

    VfioVm end = await("Running again or Failed with a reason after the agent's SIGKILL (never stuck Starting)")
        .atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .until(() -> VfioVmClusterE2E.get(vm), v -> v != null && v.getStatus() != null
            && (v.getStatus().getPhase() == Phase.Failed
                || (v.getStatus().getPhase() == Phase.Running && UidQuarantineE2E.pidsWithUid(uid).stream()
                    .noneMatch(before::contains) && !UidQuarantineE2E.pidsWithUid(uid).isEmpty())));
    System.out.printf("node agent of %s killed: the VM ended %s (%s)%n", vm.getMetadata().getName(),
        end.getStatus().getPhase(), end.getStatus().getMessage());
    if (end.getStatus().getPhase() == Phase.Failed) {
      Condition ready = end.getStatus().getConditions().stream().filter(c -> VfioVmStatus.READY.equals(c.getType()))
          .findFirst().orElseThrow();
      assertThat(ready.getReason()).as("Failed with a reason").isNotBlank();
    }
    await("the killed agent's VM processes gone").atMost(settings.timeout())
        .until(() -> UidQuarantineE2E.pidsWithUid(uid).stream().noneMatch(before::contains));
    VfioVmClusterE2E.deleteAndAwaitReleased(List.of(end));
    await("no process of host UID " + uid + " after the delete (pins back to the baseline)").atMost(settings.timeout())
        .until(() -> UidQuarantineE2E.pidsWithUid(uid).isEmpty());
  }

  /**
   * (3) The node agent SIGKILLed mid-map: while the VM is being started (the agent's report says Starting, or a
   * process of the VM's host UID exists while the report is not Running yet). The node pod has restartPolicy
   * Never, so nothing restarts it: the VM must end Failed with a reason (or Running, had a new pod come), and no
   * process of its host UID may be left on the node: no VmPin and no VmLck charged to it (pins back to the
   * baseline). After the VM's delete, still none.
   */
  @Test
  void aNodeAgentKilledMidMapLeavesNoPinsOfItsUidAndEndsFailedWithAReason() {
    var settings = VfioVmClusterE2E.settings;
    String node = VfioVmClusterE2E.seedNode().getMetadata().getName();
    String[] killedAt = new String[1];
    long[] uidOf = new long[1];
    VfioVm vm = null;
    // the deepest point first: a VM process of the UID while the report is not Running yet (it may be missed on a
    // fast start: that VM is deleted and another tried); the last try also takes the report saying Starting
    int tries = 0;
    for (int attempt = 1; attempt <= ATTEMPTS && killedAt[0] == null; attempt++) {
      tries = attempt;
      boolean last = attempt == ATTEMPTS;
      VfioVm candidate = VfioVmClusterE2E.create("mid-map-" + attempt, node);
      await("the agent of the VM starting it (a VM process not Running yet" + (last ? ", or report Starting" : "")
          + "), then SIGKILLed; or the VM Running (missed)")
          .atMost(settings.timeout()).pollInterval(Duration.ofMillis(10)).ignoreExceptions().until(() -> {
            VfioVm now = VfioVmClusterE2E.get(candidate);
            if (now == null || now.getStatus() == null || now.getStatus().getHostUid() == null) {
              return false;
            }
            long uid = now.getStatus().getHostUid();
            List<Pod> pods = VfioVmClusterE2E.nodePods(now);
            var report = pods.size() == 1 ? VfioVmClusterE2E.report(pods.get(0)) : null;
            String phase = report == null || report.getPhase() == null ? "none" : report.getPhase().name();
            if (phase.equals("Running")) {
              return true; // missed the window
            }
            List<ProcessHandle> agents = agentsOf(uid);
            if (agents.size() != 1) {
              return false;
            }
            boolean vmProcess = !UidQuarantineE2E.pidsWithUid(uid).isEmpty();
            if (vmProcess || (last && phase.equals("Starting"))) {
              long pinned = pinnedKib(uid);
              int processes = UidQuarantineE2E.pidsWithUid(uid).size();
              agents.get(0).destroyForcibly();
              uidOf[0] = uid;
              killedAt[0] = "try " + ATTEMPTS + ": report " + phase + ", " + processes + " process(es) of host UID "
                  + uid + " (" + pinned + " KiB VmPin+VmLck)";
              return true;
            }
            return false;
          });
      if (killedAt[0] == null) {
        VfioVmClusterE2E.deleteAndAwaitReleased(List.of(VfioVmClusterE2E.get(candidate)));
      } else {
        vm = candidate;
        killedAt[0] = killedAt[0].replace("try " + ATTEMPTS, "try " + attempt);
      }
    }
    assertThat(vm).as("a VM whose agent was killed mid-map in %d tries", tries).isNotNull();
    VfioVm killed = vm;
    long uid = uidOf[0];
    VfioVm end = await("Failed with a reason, or Running, after the agent's SIGKILL mid-map (never stuck Starting)")
        .atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .until(() -> VfioVmClusterE2E.get(killed), v -> v != null && v.getStatus() != null
            && (v.getStatus().getPhase() == Phase.Failed || v.getStatus().getPhase() == Phase.Running));
    if (end.getStatus().getPhase() == Phase.Failed) {
      Condition ready = end.getStatus().getConditions().stream().filter(c -> VfioVmStatus.READY.equals(c.getType()))
          .findFirst().orElseThrow();
      assertThat(ready.getReason()).as("Failed with a reason").isNotBlank();
      await("no process of host UID " + uid + " left: no VmPin/VmLck of it (pins back to the baseline)")
          .atMost(settings.timeout()).pollInterval(Duration.ofMillis(500))
          .until(() -> UidQuarantineE2E.pidsWithUid(uid).isEmpty());
    }
    System.out.printf("node agent of %s SIGKILLed mid-map (at: %s): the VM ended %s (%s); processes of host UID %d "
            + "now: %d, %d KiB VmPin+VmLck%n", killed.getMetadata().getName(), killedAt[0], end.getStatus().getPhase(),
        end.getStatus().getMessage(), uid, UidQuarantineE2E.pidsWithUid(uid).size(), pinnedKib(uid));
    VfioVmClusterE2E.deleteAndAwaitReleased(List.of(end));
    await("no process of host UID " + uid + " after the delete (pins back to the baseline)").atMost(settings.timeout())
        .until(() -> UidQuarantineE2E.pidsWithUid(uid).isEmpty() && pinnedKib(uid) == 0);
  }

  /** Tries at the VM-process window before the report's Starting is taken. */
  static final int ATTEMPTS = 4;

  /** The node agents on this host serving host UID {@code uid} (by their command line). */
  static List<ProcessHandle> agentsOf(long uid) {
    return ProcessHandle.allProcesses()
        .filter(p -> p.info().arguments().map(a -> java.util.Arrays.asList(a).contains("node-agent")
            && java.util.Arrays.asList(a).contains(Long.toString(uid))).orElse(false))
        .toList();
  }

  /** VmPin + VmLck (KiB) of every process of host UID {@code uid}, from /proc/PID/status. */
  static long pinnedKib(long uid) {
    long sum = 0;
    for (long pid : UidQuarantineE2E.pidsWithUid(uid)) {
      try {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
          if (line.startsWith("VmPin:") || line.startsWith("VmLck:")) {
            sum += Long.parseLong(line.replaceAll("[^0-9]", ""));
          }
        }
      } catch (java.io.IOException | RuntimeException e) {
        // exited meanwhile: nothing pinned
      }
    }
    return sum;
  }
}
