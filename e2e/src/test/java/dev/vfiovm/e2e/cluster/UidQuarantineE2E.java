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
    VfioVmClusterE2E.settings = E2ESettings.current();
    var settings = VfioVmClusterE2E.settings;
    Prerequisites.require(Files.isRegularFile(settings.kubeconfig()),
        "a cluster in KUBECONFIG (no kubeconfig at " + settings.kubeconfig() + ")");
    VfioVmClusterE2E.client = new KubernetesClientBuilder().build();
    Prerequisites.require(VfioVmClusterE2E.reachable(VfioVmClusterE2E.client),
        "a reachable cluster at " + VfioVmClusterE2E.client.getMasterUrl());
    Prerequisites.require(Files.isDirectory(Path.of("/proc/1")), "the node's /proc (run on the local node's host)");
    VfioVmClusterE2E.uninstall(true);
    VfioVmClusterE2E.helmInstall(new Helm(ChartRendering.chartDir()).install()
        .withName(settings.release())
        .withNamespace(settings.releaseNamespace())
        .withKubeConfig(settings.kubeconfig())
        .set("operator.uidRange.size", 1)
        .waitReady()
        .withTimeout((int) settings.timeout().toSeconds()));
    VfioVmClusterE2E.installed = true;
    VfioVmClusterE2E.vmNamespace = "vfiovm-e2e-q-" + UUID.randomUUID().toString().substring(0, 8);
    VfioVmClusterE2E.client.namespaces().resource(new NamespaceBuilder().withNewMetadata()
        .withName(VfioVmClusterE2E.vmNamespace).addToLabels("pod-security.kubernetes.io/enforce", "restricted")
        .endMetadata().build()).create();
  }

  @AfterAll
  static void uninstall() {
    VfioVmClusterE2E.cleanUp();
  }

  @Test
  void aForceDeletedRunningVmsUidGoesToNoNewVmOnTheNodeWhileItsProcessLives() {
    var client = VfioVmClusterE2E.client;
    var settings = VfioVmClusterE2E.settings;
    String node = VfioVmClusterE2E.seedNode().getMetadata().getName();
    VfioVm victim = VfioVmClusterE2E.create("victim", node);
    VfioVm running = VfioVmClusterE2E.awaitPhase(List.of(victim), Phase.Running).get(0);
    long uid = running.getStatus().getHostUid();
    assertThat(pidsWithUid(uid)).as("the VM's processes run as host UID %d", uid).isNotEmpty();

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
    boolean[] sawItAlive = {false};
    VfioVm placed = await("the new VM gets the UID only once no process has it and the node audited that")
        .atMost(settings.timeout()).pollInterval(Duration.ofMillis(500))
        .until(() -> {
          boolean alive = !pidsWithUid(uid).isEmpty();
          VfioVm current = VfioVmClusterE2E.get(next);
          Long got = current == null || current.getStatus() == null ? null : current.getStatus().getHostUid();
          if (alive) {
            sawItAlive[0] = true;
            assertThat(got).as("host UID %d handed to a new VM while a process of it lives", uid).isNull();
          }
          return current;
        }, v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed
            || v != null && v.getStatus() != null && v.getStatus().getPhase() == Phase.Running);
    assertThat(placed.getStatus().getHostUid()).isEqualTo(uid);
    Node audited = client.nodes().withName(node).get();
    UidAudit audit = UidAudit.fromJson(audited.getMetadata().getAnnotations().get(UidAudit.ANNOTATION));
    assertThat(audit.scannedAtInstant()).as("the release came from an audit after the free").isAfter(freed);
    assertThat(quarantine(client, settings)).doesNotContain("\"uid\":" + uid);
    System.out.println("UidQuarantineE2E: the force-deleted VM's process was "
        + (sawItAlive[0] ? "seen alive while the new VM waited" : "already gone at the first poll"));
    VfioVmClusterE2E.deleteAndAwaitReleased(List.of(placed));
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
