package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.controller.OperatorSettings;
import dev.vfiovm.controller.SpecValidation;
import dev.vfiovm.testing.ApiExtensionsServerFixture;
import dev.vfiovm.testing.FuzzedSpecs;
import dev.vfiovm.testing.FuzzedSpecs.Fuzzed;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Fault suite 4, admission half: every generated VfioVm (within and beyond the schema, {@link FuzzedSpecs}) is
 * created on the current API server (apiextensions-apiserver v1.36.4, real CEL). The CRD and the operator's
 * own {@link SpecValidation} must agree on every rule both have: the server refuses the object exactly when
 * SpecValidation finds a violation the CRD has a rule for, or the object breaks a rule only the CRD has (name
 * length, memory string length, nodeSelector size). A refusal is a 422 whose message names the field.
 */
class FuzzedSpecCrdIT {
  static final ResourceDefinitionContext VFIOVMS = ResourceDefinitionContext.fromResourceType(VfioVm.class);
  static final long OVERHEAD = OperatorSettings.defaults("x", "x").memlockOverheadBytes();
  static KubernetesClient client;
  static final AtomicInteger accepted = new AtomicInteger();
  static final AtomicInteger refused = new AtomicInteger();
  static final AtomicInteger operatorOnly = new AtomicInteger();

  @BeforeContainer
  static void install() {
    client = ApiExtensionsServerFixture.newClient();
    ApiExtensionsServerFixture.installCrd(client, VfioVmCrdIT.CRD);
  }

  @AfterContainer
  static void report() {
    System.out.printf("fuzzed specs on apiextensions-apiserver 1.36: %d accepted (%d of them invalid only by the "
        + "operator's own rules), %d refused at admission%n", accepted.get(), operatorOnly.get(), refused.get());
    if (client != null) {
      client.close();
    }
  }

  @Provide
  Arbitrary<Fuzzed> vms() {
    return FuzzedSpecs.vms(List.of("node-a", "node-b"), Map.of("vfiovm-fuzz/group", "a"));
  }

  @Property(tries = 400)
  void theCrdRefusesExactlyWhatSpecValidationAndTheCrdOnlyRulesRefuse(@ForAll("vms") Fuzzed f) {
    GenericKubernetesResource r = new GenericKubernetesResource();
    r.setApiVersion(VfioVm.GROUP + "/" + VfioVm.VERSION);
    r.setKind("VfioVm");
    r.setMetadata(new ObjectMetaBuilder().withName(f.name()).withNamespace("fuzz").build());
    r.setAdditionalProperty("spec", f.spec());
    String refusal = null;
    try {
      client.genericKubernetesResources(VFIOVMS).inNamespace("fuzz").resource(r).create();
    } catch (KubernetesClientException e) {
      assertThat(e.getCode()).as("not a validation answer for %s: %s", f, e.getMessage()).isEqualTo(422);
      refusal = e.getMessage();
    }
    SpecValidation.Result result = SpecValidation.validate(f.typed(), OVERHEAD);
    List<SpecValidation.Violation> shared = FuzzedSpecs.sharedViolations(result, f);
    boolean expectRefusal = !shared.isEmpty() || f.crdOnly() != null;
    assertThat(refusal != null)
        .as("%s%n  API server: %s%n  SpecValidation: %s%n  (rules both have: %s)", f,
            refusal == null ? "accepted" : refusal, result.valid() ? "valid" : result.message(), shared)
        .isEqualTo(expectRefusal);
    if (refusal != null) {
      refused.incrementAndGet();
      assertThat(refusal).as("the refusal names a field").containsAnyOf("spec.", "metadata.name");
    } else {
      accepted.incrementAndGet();
      if (!result.valid()) {
        operatorOnly.incrementAndGet();
      }
    }
  }
}
