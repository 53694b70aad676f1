package dev.vfiovm.e2e.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.marcnuri.helm.Helm;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.e2e.chart.ChartRendering;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.UUID;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * On the real local node (the test runs on the node's host, so it sees the node's /proc): a running VM's node
 * pod force-deleted (grace 0) frees its host UID without proof; with a range of ONE UID, a new VM on that node
 * can only get that UID, and must not while any host process still has it (scanned here in /proc/PID/status,
 * as the node daemon does), and gets it once it is gone and the node daemon's audit says so. The chart is
 * installed with operator.uidRange.size=1 (the node daemon audits the same range).
 */
class UidQuarantineE2E {
  @BeforeAll
  static void installChartWithAOneUidRange() {
    VfioVmClusterE2E.installOnLocalNode(install -> install.set("operator.uidRange.size", 1), "vfiovm-e2e-q");
  }

  @AfterAll
  static void uninstall() {
    VfioVmClusterE2E.cleanUp();
  }

  @Test
  void aForceDeletedRunningVmsUidGoesToNoNewVmOnTheNodeWhileItsProcessLives() throws Exception {
    var client = VfioVmClusterE2E.client;
    var settings = VfioVmClusterE2E.settings;
    String node = VfioVmClusterE2E.seedNode().getMetadata().getName();
    VfioVm victim = VfioVmClusterE2E.create("victim", node);
    VfioVm running = VfioVmClusterE2E.awaitPhase(List.of(victim), Phase.Running).get(0);
    long uid = running.getStatus().getHostUid();
    assertThat(pidsWithUid(uid)).as("the VM's processes run as host UID %d", uid).isNotEmpty();

    // A process of the VM's UID that outlives its pod: what a VM that escaped teardown, or a kubelet that never
    // got to kill it (force delete, partitioned node), leaves behind. A real host process, so the node daemon's
    // audit sees it as it would see a lingering QEMU; without it the quarantine could end before it is observed.
    Process lingering = new ProcessBuilder("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
        "sleep", "3600").inheritIO().start();
    try {
      await("the lingering process runs as UID " + uid).atMost(Duration.ofSeconds(30))
          .until(() -> pidsWithUid(uid).contains(lingering.pid()));

      // force-deleted: the API object goes at once, whatever still runs on the node
      Pod pod = VfioVmClusterE2E.nodePod(running);
      Instant freed = Instant.now();
      client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
          .withGracePeriod(0).delete();
      VfioVmClusterE2E.vms().inNamespace(VfioVmClusterE2E.vmNamespace).withName("victim").withGracePeriod(0).delete();
      await("victim gone").atMost(settings.timeout()).until(() -> VfioVmClusterE2E.get(victim) == null);
      await("UID quarantined").atMost(settings.timeout()).until(() -> quarantine(client, settings).contains(
          "\"uid\":" + uid));

      VfioVm next = VfioVmClusterE2E.create("next", node);
      // an audit scanned after the free that still lists the UID: the new VM has been refused it
      await("an audit after the free listing UID " + uid).atMost(settings.timeout())
          .until(() -> audit(client, node), a -> a != null && a.scannedAtInstant().isAfter(freed)
              && a.liveUids().contains(uid));
      await("the new VM waits for a UID").atMost(settings.timeout())
          .untilAsserted(() -> {
            VfioVm current = VfioVmClusterE2E.get(next);
            assertThat(current).isNotNull();
            assertThat(current.getStatus()).isNotNull();
            assertThat(current.getStatus().getHostUid()).as("host UID %d handed to a new VM while a process of it "
                + "lives", uid).isNull();
            assertThat(current.getStatus().getConditions()).anyMatch(c -> c.getType().equals("UidAssigned")
                && c.getStatus().equals("False"));
          });
      assertThat(pidsWithUid(uid)).as("still alive when the new VM was refused").contains(lingering.pid());

      lingering.destroyForcibly().waitFor();
      Instant gone = Instant.now();
      VfioVm placed = await("the new VM gets the UID once no process has it and the node audited that")
          .atMost(settings.timeout()).pollInterval(Duration.ofMillis(500))
          .until(() -> VfioVmClusterE2E.get(next), v -> v != null && v.getStatus() != null
              && (v.getStatus().getPhase() == Phase.Placed || v.getStatus().getPhase() == Phase.Starting
                  || v.getStatus().getPhase() == Phase.Running));
      assertThat(placed.getStatus().getHostUid()).isEqualTo(uid);
      assertThat(pidsWithUid(uid)).as("no process of the old VM's UID").isEmpty();
      assertThat(audit(client, node).scannedAtInstant()).as("the release came from an audit after the process died")
          .isAfter(gone.minusSeconds(1));
      assertThat(quarantine(client, settings)).doesNotContain("\"uid\":" + uid);
      VfioVmClusterE2E.deleteAndAwaitReleased(List.of(placed));
    } finally {
      lingering.destroyForcibly();
    }
  }

  static UidAudit audit(io.fabric8.kubernetes.client.KubernetesClient client, String node) {
    Node now = client.nodes().withName(node).get();
    String json = now == null || now.getMetadata().getAnnotations() == null ? null
        : now.getMetadata().getAnnotations().get(UidAudit.ANNOTATION);
    return json == null ? null : UidAudit.fromJson(json);
  }

  static String quarantine(io.fabric8.kubernetes.client.KubernetesClient client, E2ESettings settings) {
    ConfigMap cm = client.configMaps().inNamespace(settings.operatorNamespace()).withName("vfiovm-uid-quarantine").get();
    return cm == null || cm.getData() == null ? "" : String.valueOf(cm.getData().get("state.json"));
  }

  /** Host processes with the UID as real, effective, saved or fs UID (the Uid: line of /proc/PID/status). */
  static List<Long> pidsWithUid(long uid) {
    try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
      return procs.filter(p -> p.getFileName().toString().matches("\\d+"))
          .filter(p -> {
            try {
              return Files.readAllLines(p.resolve("status")).stream().filter(l -> l.startsWith("Uid:"))
                  .anyMatch(l -> Stream.of(l.substring(4).trim().split("\\s+")).anyMatch(u -> u.equals(Long.toString(uid))));
            } catch (IOException | RuntimeException e) {
              return false; // exited meanwhile
            }
          })
          .map(p -> Long.parseLong(p.getFileName().toString())).toList();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }
}
