package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Fault suite 3: kube-apiserver and etcd killed (SIGKILL) and restarted (same ports, same etcd data) in the
 * middle of create/delete churn. The operator (its own JVM) is not restarted: it must reconnect by itself and
 * converge - every VM Running or gone, 0 orphan node pods, 0 VMs stuck deleting, the invariants held at every
 * sampled moment - and VMs created and deleted after the restart must be handled.
 */
class ApiServerRestartFaultIT {
  static final int APPLIERS = 4;
  static final int OPS_BEFORE = 20;
  static final int OPS_AFTER = 30;
  static final int STABLE = 4;

  @Test
  void theOperatorRecoversFromAnApiServerAndEtcdRestartWithoutItsOwn() throws Exception {
    long t0 = System.nanoTime();
    try (FaultCluster cluster = new FaultCluster("apirestart", 3, "16Mi")) {
      OperatorProcess operator = cluster.operator("apirestart", cluster.operatorArgs(1_879_048_192L, 4096, false));
      long pid = operator.pid();
      AtomicInteger issued = new AtomicInteger();
      AtomicInteger okAfter = new AtomicInteger();
      AtomicInteger failed = new AtomicInteger();
      AtomicBoolean restarted = new AtomicBoolean();
      AtomicBoolean done = new AtomicBoolean();
      try (FaultCluster.Sampler sampler = cluster.new Sampler()) {
        // VMs that live through the restart: Running before, the same node pods after
        for (int i = 0; i < STABLE; i++) {
          cluster.client.resource(cluster.vm("stable-" + i, "1Mi")).create();
        }
        List<VfioVm> stable = cluster.awaitConverged(FaultCluster.CONVERGE);
        Map<String, String> podUids = cluster.nodePods().stream().collect(Collectors.toMap(
            p -> p.getMetadata().getName(), p -> p.getMetadata().getUid()));
        ExecutorService pool = Executors.newFixedThreadPool(APPLIERS);
        List<Future<?>> appliers = new ArrayList<>();
        for (int a = 0; a < APPLIERS; a++) {
          int applier = a;
          appliers.add(pool.submit(() -> {
            try (KubernetesClient c = FaultCluster.client("faults-applier-" + applier)) {
              var vms = c.resources(VfioVm.class).inNamespace(cluster.vmNs);
              ThreadLocalRandom r = ThreadLocalRandom.current();
              while (!done.get()) {
                issued.incrementAndGet();
                String name = "a" + applier + "-" + r.nextInt(3);
                try {
                  if (vms.withName(name).get() == null) {
                    vms.resource(cluster.vm(name, "1Mi")).create();
                  } else {
                    vms.withName(name).delete();
                  }
                  if (restarted.get()) {
                    okAfter.incrementAndGet();
                  }
                } catch (KubernetesClientException e) {
                  failed.incrementAndGet(); // conflicts, and everything while the API server is down
                }
                Thread.sleep(r.nextInt(800)); // pacing: load shape, not synchronisation
              }
            }
            return null;
          }));
        }
        await().atMost(Duration.ofMinutes(5)).until(() -> issued.get() >= OPS_BEFORE);
        int podsBefore = cluster.pods.created.size();
        long down = System.nanoTime();
        KubeApiServerFixture.restartServers();
        double downSeconds = (System.nanoTime() - down) / 1e9;
        restarted.set(true);
        await().atMost(Duration.ofMinutes(5)).until(() -> okAfter.get() >= OPS_AFTER);
        done.set(true);
        for (Future<?> f : appliers) {
          f.get();
        }
        pool.shutdown();
        for (int i = 0; i < STABLE; i++) {
          cluster.client.resource(cluster.vm("post-" + i, "1Mi")).create();
        }
        List<VfioVm> end = cluster.awaitConverged(FaultCluster.CONVERGE);
        Map<String, String> podUidsAfter = cluster.nodePods().stream().collect(Collectors.toMap(
            p -> p.getMetadata().getName(), p -> p.getMetadata().getUid()));
        sampler.close();
        int health = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(
            "http://127.0.0.1:" + operator.httpPort + "/healthz")).build(), HttpResponse.BodyHandlers.ofString()).statusCode();
        System.out.printf("apirestart: %d VMs Running before the restart, %d ops of churn (%d refused or failed, %d "
                + "succeeded after the restart), kube-apiserver + etcd down and back in %.1f s; node pods created %d "
                + "before the restart, %d in all; operator pid %d "
                + "alive=%s starts=%d, /healthz %d; %d invariant samples, %d violations; end: %d VMs Running; %.0f s%n",
            stable.size(), issued.get(), failed.get(), okAfter.get(), downSeconds, podsBefore, cluster.pods.created.size(), pid,
            operator.alive(), operator.starts, health, sampler.samples.get(), sampler.violations.size(), end.size(),
            (System.nanoTime() - t0) / 1e9);
        assertThat(stable).hasSize(STABLE);
        assertThat(end.stream().map(v -> v.getMetadata().getName()))
            .as("the VMs created before and after the restart all run")
            .contains(java.util.stream.IntStream.range(0, STABLE).boxed()
                .flatMap(i -> java.util.stream.Stream.of("stable-" + i, "post-" + i)).toArray(String[]::new));
        assertThat(podUidsAfter).as("the node pods of the VMs that lived through the restart are the same pods")
            .containsAllEntriesOf(podUids);
        assertThat(operator.alive()).as("the operator survived without a restart").isTrue();
        assertThat(operator.pid()).isEqualTo(pid);
        assertThat(operator.starts).isEqualTo(1);
        assertThat(health).as("/healthz after recovery").isEqualTo(200);
        assertThat(sampler.violations).isEmpty();
        assertThat(cluster.nodePods()).hasSize(end.size());
      }
    }
  }
}
