package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.controller.SpecValidation;
import dev.vfiovm.testing.FuzzedSpecs;
import dev.vfiovm.testing.FuzzedSpecs.Fuzzed;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Fault suite 4, operator half: every generated VfioVm ({@link FuzzedSpecs}) applied to the 1.20 API server
 * (schema without CEL: the operator's checks are the fallback) is refused at admission, or ends Running (the
 * stand-in kubelet and agent), or Failed/Pending with a Ready=False condition whose message names the field;
 * an invalid spec (by SpecValidation) never gets a node pod; the operator never throws out of reconcile (no
 * "reconcile failed" in its log); every node pod belongs to a VM whose status has its host UID and node (no
 * half-made object); at the end every VM deletes (no leaked finalizer). Tries: {@code jqwik.tries.default}.
 */
class FuzzedSpecFaultIT {
  static final ResourceDefinitionContext VFIOVMS = ResourceDefinitionContext.fromResourceType(VfioVm.class);
  static final long OVERHEAD = 1L << 20;
  static final List<String> FIELDS = List.of("spec.", "memory", "device", "nodeName", "nodeSelector", "dmaBackend", "cpus");
  static FaultCluster cluster;
  static OperatorProcess operator;
  static final Map<String, AtomicInteger> outcomes = new TreeMap<>();

  @BeforeContainer
  static void start() throws Exception {
    cluster = new FaultCluster("fuzz", 2, "256Mi");
    operator = cluster.operator("fuzz", cluster.operatorArgs(1_879_048_192L, 4096, false));
  }

  @AfterContainer
  static void finish() {
    try {
      List<VfioVm> vms = cluster.vms();
      List<String> orphans = FaultCluster.orphans(vms, cluster.nodePods());
      cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).delete();
      await("every fuzzed VM deleted (no leaked finalizer)").atMost(FaultCluster.CONVERGE)
          .pollInterval(Duration.ofMillis(500)).until(() -> cluster.vms().isEmpty() && cluster.nodePods().isEmpty());
      System.out.printf("fuzzed specs on kube-apiserver 1.20 with the operator: %s; %d node pods created; "
          + "'reconcile failed' lines %d; orphans %s%n", outcomes, cluster.pods.created.size(),
          operator.logLines("reconcile failed").size(), orphans);
      assertThat(orphans).as("node pods without a VM status holding their UID and node").isEmpty();
    } finally {
      cluster.close();
    }
  }

  static void count(String outcome) {
    synchronized (outcomes) {
      outcomes.computeIfAbsent(outcome, o -> new AtomicInteger()).incrementAndGet();
    }
  }

  @Provide
  Arbitrary<Fuzzed> vms() {
    return FuzzedSpecs.vms(cluster.nodes, cluster.selector);
  }

  @Property
  void everySpecIsRefusedOrRunsOrSaysWhichFieldIsWrong(@ForAll("vms") Fuzzed f) {
    GenericKubernetesResource r = new GenericKubernetesResource();
    r.setApiVersion(VfioVm.GROUP + "/" + VfioVm.VERSION);
    r.setKind("VfioVm");
    r.setMetadata(new ObjectMetaBuilder().withName(f.name()).withNamespace(cluster.vmNs).build());
    r.setAdditionalProperty("spec", f.spec());
    try {
      cluster.client.genericKubernetesResources(VFIOVMS).inNamespace(cluster.vmNs).resource(r).create();
    } catch (KubernetesClientException e) {
      assertThat(e.getCode()).as("%s: %s", f, e.getMessage()).isEqualTo(422);
      count("refused at admission");
      return;
    }
    VfioVm vm = await("an outcome for " + f).atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(200))
        .until(() -> cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName(f.name()).get(),
            v -> v.getStatus() != null && (v.getStatus().getPhase() == Phase.Running
                || v.getStatus().getPhase() == Phase.Failed || v.getStatus().getPhase() == Phase.Pending
                || (v.getStatus().getMessage() != null && v.getStatus().getMessage().startsWith("reconcile failed"))));
    VfioVmStatus status = vm.getStatus();
    SpecValidation.Result validation = SpecValidation.validate(vm.getSpec(), OVERHEAD);
    String key = vm.getMetadata().getNamespace() + "/" + vm.getMetadata().getName();
    String about = f + " -> " + status.getPhase() + ": " + status.getMessage();
    assertThat(operator.logLines(key + ": reconcile failed")).as("the operator threw out of reconcile; %s", about).isEmpty();
    if (status.getPhase() == Phase.Running) {
      assertThat(validation.valid()).as("Running with an invalid spec: %s", about).isTrue();
      count("Running");
    } else {
      Condition ready = status.getConditions().stream().filter(c -> VfioVmStatus.READY.equals(c.getType()))
          .findFirst().orElse(null);
      assertThat(ready).as("a Ready condition: %s", about).isNotNull();
      assertThat(ready.getStatus()).isEqualTo("False");
      assertThat(ready.getMessage()).as("the condition names the field: %s", about).containsAnyOf(FIELDS.toArray(String[]::new));
      count(status.getPhase() + " " + ready.getReason());
    }
    if (!validation.valid()) {
      assertThat(status.getPhase()).as(about).isEqualTo(Phase.Failed);
      assertThat(cluster.pods.createdByVm.get(key)).as("a node pod for an invalid spec: %s", about).isNull();
    }
  }
}
