package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonClassDescription;
import io.fabric8.crdv2.generator.CRDGenerator;
import io.fabric8.crdv2.generator.CRDPostProcessor;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.JSONSchemaProps;
import java.io.File;
import java.util.List;

/**
 * Build step (process-classes, exec-maven-plugin): generates the CRD from the Java model with fabric8's
 * crd-generator (as its Maven plugin would), then adds what its 7.5.2 annotations cannot express:
 * <ul>
 *   <li>the root description ({@code kubectl explain vfiovm}), taken from {@link VfioVm}'s
 *       {@link JsonClassDescription};</li>
 *   <li>{@code spec.devices} as {@code x-kubernetes-list-type: map} keyed by {@code pciAddress}, so the API
 *       server itself refuses a device listed twice (and SSA merges devices by address);</li>
 *   <li>{@code spec.nodeSelector}'s values as label values (maxLength 63 and a pattern on additionalProperties).</li>
 * </ul>
 * Everything else (patterns, sizes, CEL rules, int-or-string) comes from annotations on the model.
 * Usage: {@code CrdGeneration OUTPUT_DIR} (writes vfiovms.vfiovm.dev-v1.yml there). crd-generator-api-v2 is a
 * build-time (provided) dependency: the operator never runs this class.
 */
public final class CrdGeneration {
  private CrdGeneration() {}

  public static void main(String[] args) {
    if (args.length != 1) {
      throw new IllegalArgumentException("usage: CrdGeneration OUTPUT_DIR");
    }
    File out = new File(args[0]);
    if (!out.isDirectory() && !out.mkdirs()) {
      throw new IllegalStateException("cannot create " + out);
    }
    int written = new CRDGenerator()
        .inOutputDir(out)
        .forCRDVersions("v1")
        .withPostProcessor(new CRDPostProcessor() {
          @Override
          public HasMetadata process(HasMetadata crd, String crdVersion) {
            return CrdGeneration.process(crd);
          }
        })
        .customResourceClasses(VfioVm.class)
        .generate();
    if (written != 1) {
      throw new IllegalStateException("expected one CRD, generated " + written);
    }
  }

  static HasMetadata process(HasMetadata generated) {
    CustomResourceDefinition crd = (CustomResourceDefinition) generated;
    JSONSchemaProps root = crd.getSpec().getVersions().get(0).getSchema().getOpenAPIV3Schema();
    root.setDescription(VfioVm.class.getAnnotation(JsonClassDescription.class).value());
    JSONSchemaProps devices = root.getProperties().get("spec").getProperties().get("devices");
    devices.setXKubernetesListType("map");
    devices.setXKubernetesListMapKeys(List.of("pciAddress"));
    // label values, in the plain schema (any server enforces it; bounded, so the key rule's CEL cost is too)
    JSONSchemaProps values = root.getProperties().get("spec").getProperties().get("nodeSelector")
        .getAdditionalProperties().getSchema();
    values.setMaxLength(63L);
    values.setPattern(VfioVmSpec.LABEL_VALUE_PATTERN);
    return crd;
  }
}
