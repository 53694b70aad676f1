package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.controller.SpecValidation;
import dev.vfiovm.controller.VfioVmReconciler;
import dev.vfiovm.testing.ApiExtensionsServerFixture;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.ManagedFieldsEntry;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The generated CRD on a current API server (apiextensions-apiserver v1.36.4, real CEL): every schema and CEL
 * rule both ways (accepted, and refused with the message a user reads), and server-side apply of spec (a
 * user's manager) and of finalizer and status by the field manager the operator uses.
 */
class VfioVmCrdIT {
  static final String CRD = "META-INF/fabric8/vfiovms.vfiovm.dev-v1.yml";
  /** JOSDK's default field manager for the primary resource (finalizer, status) is the controller's name. */
  static final String OPERATOR = VfioVmReconciler.NAME;
  static final String USER = "kubectl";
  static final ResourceDefinitionContext VFIOVMS = ResourceDefinitionContext.fromResourceType(VfioVm.class);

  static KubernetesClient client;
  static final String ns = "crd-" + UUID.randomUUID().toString().substring(0, 6);

  @BeforeAll
  static void install() {
    client = ApiExtensionsServerFixture.newClient();
    assertThat(ApiExtensionsServerFixture.version(client)).startsWith("v1.36.");
    var crd = ApiExtensionsServerFixture.installCrd(client, CRD);
    // the server kept every rule: none was dropped as unknown
    assertThat(crd.getSpec().getVersions().get(0).getSchema().getOpenAPIV3Schema().getXKubernetesValidations())
        .hasSize(10);
  }

  @AfterAll
  static void close() {
    if (client != null) {
      client.close();
    }
  }

  // ---- helpers ----

  static String name() {
    return "vm-" + UUID.randomUUID().toString().substring(0, 8);
  }

  /** A VfioVm object from its name and spec (maps and lists as JSON has them). */
  static GenericKubernetesResource vm(String name, Map<String, Object> spec) {
    GenericKubernetesResource r = new GenericKubernetesResource();
    r.setApiVersion(VfioVm.GROUP + "/" + VfioVm.VERSION);
    r.setKind("VfioVm");
    r.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace(ns).build());
    r.setAdditionalProperty("spec", spec);
    return r;
  }

  static Map<String, Object> spec(Object... keyValues) {
    Map<String, Object> spec = new LinkedHashMap<>();
    spec.put("memory", "64Mi");
    for (int i = 0; i < keyValues.length; i += 2) {
      if (keyValues[i + 1] == null) {
        spec.remove((String) keyValues[i]);
      } else {
        spec.put((String) keyValues[i], keyValues[i + 1]);
      }
    }
    return spec;
  }

  static List<Map<String, Object>> devices(String... addresses) {
    return Stream.of(addresses).map(a -> Map.<String, Object>of("pciAddress", a)).toList();
  }

  static GenericKubernetesResource create(GenericKubernetesResource r) {
    return client.genericKubernetesResources(VFIOVMS).inNamespace(ns).resource(r).create();
  }

  /** Server-side applies the object as {@code manager}. */
  static GenericKubernetesResource apply(GenericKubernetesResource r, String manager) {
    return client.genericKubernetesResources(VFIOVMS).inNamespace(ns).resource(r)
        .fieldManager(manager).forceConflicts().serverSideApply();
  }

  /** Server-side applies a status as the operator does (status subresource, its field manager, forced). */
  static GenericKubernetesResource applyStatus(String name, Map<String, Object> status) {
    GenericKubernetesResource r = new GenericKubernetesResource();
    r.setApiVersion(VfioVm.GROUP + "/" + VfioVm.VERSION);
    r.setKind("VfioVm");
    r.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace(ns).build());
    r.setAdditionalProperty("status", status);
    return client.genericKubernetesResources(VFIOVMS).inNamespace(ns).resource(r).subresource("status")
        .patch(new PatchContext.Builder().withPatchType(PatchType.SERVER_SIDE_APPLY).withFieldManager(OPERATOR)
            .withForce(true).build());
  }

  static Map<String, Object> placedStatus(String node) {
    return Map.of("phase", "Placed", "nodeName", node, "hostUid", 1879048193L, "memlockLimitBytes", 1140850688L);
  }

  /** Asserts the API server refuses the call as invalid (422), with {@code message} in its answer. */
  static void refused(Runnable call, String message) {
    assertThatThrownBy(call::run)
        .isInstanceOfSatisfying(KubernetesClientException.class, e -> {
          assertThat(e.getCode()).as(e.getMessage()).isEqualTo(422);
          assertThat(e.getMessage()).contains(message);
        });
  }

  static void refusedOnCreate(Map<String, Object> spec, String message) {
    refused(() -> create(vm(name(), spec)), message);
  }

  static Map<String, Object> specOf(GenericKubernetesResource r) {
    @SuppressWarnings("unchecked")
    Map<String, Object> spec = (Map<String, Object>) r.getAdditionalProperties().get("spec");
    return spec;
  }

  // ---- apply-time rules ----

  @Test
  void aFullValidSpecIsAcceptedDefaultedAndReadsBackAsTheModel() {
    Map<String, Object> spec = spec("memory", "4Gi", "devices", devices("0000:3b:00.0", "0000:af:00.1"),
        "nodeName", "worker-1.example", "nodeSelector", Map.of("kubernetes.io/hostname", "worker-1", "gpu", ""),
        "cpus", 4, "boot", Map.of("containerDisk", Map.of("image", "registry.example/guests/demo:1.0"),
            "kernel", "/boot/vmlinuz", "cmdline", "console=ttyS0"));
    GenericKubernetesResource created = create(vm(name(), spec));
    VfioVm typed = Serialization.unmarshal(Serialization.asJson(created), VfioVm.class);
    assertThat(typed.getSpec().getAccounting()).isEqualTo(Accounting.PerUser);
    assertThat(typed.getSpec().getDmaBackend()).isEqualTo(DmaBackend.Auto);
    assertThat(typed.getSpec().getConsole()).isEqualTo(Console.Serial);
    assertThat(SpecValidation.validate(typed.getSpec(), 1L << 30).valid()).isTrue();
  }

  @Test
  void memoryIsAQuantityOrAWholeNumberOfPagesInBytes() {
    GenericKubernetesResource created = create(vm(name(), spec("memory", 4294967296L)));
    VfioVm typed = Serialization.unmarshal(Serialization.asJson(created), VfioVm.class);
    assertThat(typed.getSpec().getMemory()).isEqualTo("4294967296");
    assertThat(SpecValidation.validate(typed.getSpec(), 1L << 30).plan().memoryBytes()).isEqualTo(4294967296L);
    create(vm(name(), spec("memory", "1.5Gi")));

    String pages = "spec.memory as a number of bytes must be a positive multiple of 4096 (whole 4 KiB pages), "
        + "e.g. 4294967296";
    refusedOnCreate(spec("memory", 4097), pages);
    refusedOnCreate(spec("memory", 0), pages);
    refusedOnCreate(spec("memory", -4096), pages);
    refusedOnCreate(spec("memory", "4 Gi"), "spec.memory in body should match");
    refusedOnCreate(spec("memory", "-1Gi"), "spec.memory in body should match");
    refusedOnCreate(spec("memory", null), "spec.memory: Required value");
  }

  @Test
  void deviceAddressesAreLowerCasePciAddresses() {
    create(vm(name(), spec("devices", devices("0000:3b:00.0", "abcd:ef:1f.7"))));
    refusedOnCreate(spec("devices", devices("0000:3B:00.0")), "spec.devices[0].pciAddress in body should match");
    refusedOnCreate(spec("devices", devices("3b:00.0")), "spec.devices[0].pciAddress in body should match");
    refusedOnCreate(spec("devices", devices("0000:3b:00.8")), "spec.devices[0].pciAddress in body should match");
    refusedOnCreate(spec("devices", List.of(Map.of())), "spec.devices[0].pciAddress: Required value");
  }

  @Test
  void aDeviceListedTwiceAndMoreThan32DevicesAreRefused() {
    refusedOnCreate(spec("devices", devices("0000:3b:00.0", "0000:af:00.0", "0000:3b:00.0")),
        "spec.devices[2]: Duplicate value: {\"pciAddress\":\"0000:3b:00.0\"}");
    String[] thirtyTwo = IntStream.range(0, 32).mapToObj(i -> "0000:%02x:00.0".formatted(i)).toArray(String[]::new);
    create(vm(name(), spec("devices", devices(thirtyTwo))));
    String[] thirtyThree = IntStream.range(0, 33).mapToObj(i -> "0000:%02x:00.0".formatted(i)).toArray(String[]::new);
    refusedOnCreate(spec("devices", devices(thirtyThree)), "spec.devices: Too many: 33: must have at most 32 items");
  }

  @Test
  void nodeNameIsANodeNameOrEmpty() {
    create(vm(name(), spec("nodeName", "")));
    create(vm(name(), spec("nodeName", "ip-10-0-0-1.eu-west-1.compute.internal")));
    refusedOnCreate(spec("nodeName", "Worker_1"), "spec.nodeName in body should match");
    refusedOnCreate(spec("nodeName", "-worker"), "spec.nodeName in body should match");
    refusedOnCreate(spec("nodeName", "a".repeat(254)), "spec.nodeName: Too long: may not be");
  }

  @Test
  void nodeSelectorKeysAndValuesAreLabels() {
    create(vm(name(), spec("nodeSelector", Map.of("kubernetes.io/hostname", "worker-1", "vfiovm.dev/gpu", "",
        "Zone_A", "eu.west-1", "a".repeat(63), "b".repeat(63)))));
    String keys = "spec.nodeSelector: every key must be a label key: an optional DNS-subdomain prefix and '/', "
        + "then a name of at most 63 characters (A-Z a-z 0-9 - _ .) that starts and ends alphanumeric, "
        + "e.g. kubernetes.io/hostname";
    refusedOnCreate(spec("nodeSelector", Map.of("has space", "x")), keys);
    refusedOnCreate(spec("nodeSelector", Map.of("Example.com/gpu", "x")), keys);
    refusedOnCreate(spec("nodeSelector", Map.of("example.com/", "x")), keys);
    refusedOnCreate(spec("nodeSelector", Map.of("a".repeat(64), "x")), keys);
    // values: the plain schema (any server): a pattern and at most 63 characters
    refusedOnCreate(spec("nodeSelector", Map.of("gpu", "a b")), "spec.nodeSelector.gpu in body should match");
    refusedOnCreate(spec("nodeSelector", Map.of("gpu", "-x")), "spec.nodeSelector.gpu in body should match");
    refusedOnCreate(spec("nodeSelector", Map.of("gpu", "a".repeat(64))), "spec.nodeSelector.gpu: Too long: may not be");
    Map<String, Object> many = new LinkedHashMap<>();
    IntStream.range(0, 65).forEach(i -> many.put("l" + i, "v"));
    refusedOnCreate(spec("nodeSelector", many), "spec.nodeSelector: Too many: 65: must have at most 64 items");
    many.remove("l64");
    create(vm(name(), spec("nodeSelector", many)));
  }

  @Test
  void cpusAndBootStringsAreBounded() {
    create(vm(name(), spec("cpus", 64)));
    refusedOnCreate(spec("cpus", 0), "spec.cpus in body should be greater than or equal to 1");
    refusedOnCreate(spec("cpus", 65), "spec.cpus in body should be less than or equal to 64");
    Map<String, Object> image = Map.of("image", "registry.example/guests/demo:1.0");
    create(vm(name(), spec("boot", Map.of("containerDisk", image, "kernel", "/k", "cmdline", "x".repeat(2048)))));
    refusedOnCreate(spec("boot", Map.of("containerDisk", image, "kernel", "/k", "cmdline", "x".repeat(2049))),
        "spec.boot.cmdline: Too long: may not be");
    refusedOnCreate(spec("boot", Map.of("containerDisk", Map.of("image", "r/" + "x".repeat(1023)), "disk", "/d")),
        "spec.boot.containerDisk.image: Too long: may not be");
  }

  @Test
  void theNameIsAtMost63Characters() {
    String name63 = "v" + "m".repeat(62);
    create(vm(name63, spec()));
    refused(() -> create(vm(name63 + "x", spec())),
        "metadata.name must be at most 63 characters: it becomes a label value of the VM's node pod");
  }

  @Test
  void theExamplesAreAccepted() throws Exception {
    java.nio.file.Path examples = java.nio.file.Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", ".."),
        "operator", "examples");
    List<java.nio.file.Path> files;
    try (var list = java.nio.file.Files.list(examples)) {
      files = list.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
    }
    assertThat(files).hasSizeGreaterThanOrEqualTo(3);
    for (java.nio.file.Path file : files) {
      try (var in = java.nio.file.Files.newInputStream(file)) {
        GenericKubernetesResource example = Serialization.unmarshal(in, GenericKubernetesResource.class);
        example.getMetadata().setNamespace(ns);
        assertThat(create(example).getMetadata().getUid()).as(file.toString()).isNotBlank();
      }
    }
  }

  @Test
  void kubectlExplainHasARootDescription() {
    var crd = client.apiextensions().v1().customResourceDefinitions().withName("vfiovms.vfiovm.dev").get();
    assertThat(crd.getSpec().getVersions().get(0).getSchema().getOpenAPIV3Schema().getDescription())
        .startsWith("A virtual machine with VFIO devices (PCI passthrough).");
  }

  // ---- transition rules: placed fields are immutable once placed ----

  static Stream<Arguments> placedFields() {
    Map<String, Object> bootA = Map.of("containerDisk", Map.of("image", "registry.example/a:1"), "kernel", "/k");
    Map<String, Object> bootB = Map.of("containerDisk", Map.of("image", "registry.example/b:1"), "kernel", "/k");
    return Stream.of(
        Arguments.of("memory", "64Mi", "128Mi"),
        Arguments.of("memory", "64Mi", 67108864L), // the same size, written differently, is still a change
        Arguments.of("nodeName", "worker-1", "worker-2"),
        Arguments.of("nodeName", null, "worker-1"),
        Arguments.of("nodeSelector", Map.of("gpu", "a"), Map.of("gpu", "b")),
        Arguments.of("nodeSelector", null, Map.of("gpu", "a")),
        Arguments.of("viommu", false, true),
        Arguments.of("accounting", "PerUser", "PerProcess"),
        Arguments.of("dmaBackend", "Auto", "IoUring"),
        Arguments.of("cpus", 1, 2),
        Arguments.of("boot", bootA, bootB),
        Arguments.of("boot", null, bootA),
        Arguments.of("boot", bootA, null),
        Arguments.of("console", "Serial", "None"));
  }

  @ParameterizedTest(name = "spec.{0}: {1} -> {2}")
  @MethodSource("placedFields")
  void aPlacedFieldMayChangeBeforePlacementButNotAfter(String field, Object before, Object after) {
    String name = name();
    apply(vm(name, spec(field, before)), USER);
    // not placed yet (no status.nodeName): an edit is accepted, e.g. to fit a node's budget ...
    apply(vm(name, spec(field, after)), USER);
    apply(vm(name, spec(field, before)), USER);
    applyStatus(name, Map.of("phase", "Pending", "nodeName", ""));
    apply(vm(name, spec(field, after)), USER);
    apply(vm(name, spec(field, before)), USER);
    // ... once placed it is refused, with the field named
    applyStatus(name, placedStatus("worker-1"));
    refused(() -> apply(vm(name, spec(field, after)), USER),
        "spec." + field + ": Invalid value: spec." + field
            + " cannot change after the VM is placed on a node: delete and re-create the VfioVm");
    // the same spec again, labels, and the operator's finalizer and status still go through
    apply(vm(name, spec(field, before)), USER);
    GenericKubernetesResource labelled = vm(name, spec(field, before));
    labelled.getMetadata().setLabels(Map.of("team", "a"));
    apply(labelled, USER);
    applyStatus(name, Map.of("phase", "Running", "nodeName", "worker-1", "pinnedBytes", 67108864L));
  }

  @Test
  void devicesOfAPlacedVmMayChangeButNoOtherFieldWithThem() {
    String name = name();
    apply(vm(name, spec("devices", devices("0000:3b:00.0"))), USER);
    applyStatus(name, placedStatus("worker-1"));
    // hot-plug: add, remove, remove all, add again - each accepted on the placed VM
    apply(vm(name, spec("devices", devices("0000:3b:00.0", "0000:af:00.0"))), USER);
    apply(vm(name, spec("devices", devices("0000:af:00.0"))), USER);
    apply(vm(name, spec("devices", null)), USER);
    apply(vm(name, spec("devices", devices("0000:3b:00.0"))), USER);
    // a JSON patch as the docs show it (kubectl patch vvm NAME --type=json ...)
    client.genericKubernetesResources(VFIOVMS).inNamespace(ns).withName(name).patch(
        PatchContext.of(PatchType.JSON),
        "[{\"op\":\"add\",\"path\":\"/spec/devices/-\",\"value\":{\"pciAddress\":\"0000:af:00.0\"}}]");
    assertThat(specOf(client.genericKubernetesResources(VFIOVMS).inNamespace(ns).withName(name).get()).get("devices"))
        .isEqualTo(devices("0000:3b:00.0", "0000:af:00.0"));
    // the schema still holds for devices: a malformed address, a device twice
    refused(() -> apply(vm(name, spec("devices", devices("0000:3b:00.0", "3b:00.1"))), USER), "pciAddress");
    // another field edited together with devices is still refused, naming that field only
    refused(() -> apply(vm(name, spec("devices", devices("0000:3b:00.0"), "cpus", 2)), USER),
        "spec.cpus cannot change after the VM is placed on a node");
    assertThatThrownBy(() -> apply(vm(name, spec("devices", devices("0000:3b:00.0"), "cpus", 2)), USER))
        .hasMessageNotContaining("spec.devices cannot change");
  }

  @Test
  void reorderingDevicesIsNoChange() {
    String name = name();
    apply(vm(name, spec("devices", devices("0000:3b:00.0", "0000:af:00.0"))), USER);
    applyStatus(name, placedStatus("worker-1"));
    apply(vm(name, spec("devices", devices("0000:af:00.0", "0000:3b:00.0"))), USER);
  }

  @Test
  void twoEditsAtOnceNameBothFields() {
    String name = name();
    apply(vm(name, spec("cpus", 1)), USER);
    applyStatus(name, placedStatus("worker-1"));
    refused(() -> apply(vm(name, spec("cpus", 2, "memory", "128Mi")), USER),
        "spec.memory cannot change after the VM is placed on a node");
    refused(() -> apply(vm(name, spec("cpus", 2, "memory", "128Mi")), USER),
        "spec.cpus cannot change after the VM is placed on a node");
  }

  // ---- server-side apply by the managers in play ----

  @Test
  void userSpecAndOperatorFinalizerAndStatusAreAppliedByTheirOwnManagers() {
    String name = name();
    apply(vm(name, spec("memory", "64Mi", "devices", devices("0000:3b:00.0"))), USER);
    // the operator (JOSDK) adds its finalizer by SSA as the controller's manager, with no spec
    GenericKubernetesResource finalizer = new GenericKubernetesResource();
    finalizer.setApiVersion(VfioVm.GROUP + "/" + VfioVm.VERSION);
    finalizer.setKind("VfioVm");
    finalizer.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace(ns)
        .withFinalizers("vfiovms.vfiovm.dev/finalizer").build());
    apply(finalizer, OPERATOR);
    applyStatus(name, placedStatus("worker-1"));
    GenericKubernetesResource live = applyStatus(name, Map.of("phase", "Running", "nodeName", "worker-1",
        "hostUid", 1879048193L, "memlockLimitBytes", 1140850688L, "pinnedBytes", 67108864L,
        "devices", List.of(Map.of("pciAddress", "0000:3b:00.0", "cdev", "/dev/vfio/devices/vfio0", "attached", true)),
        "conditions", List.of(Map.of("type", "Ready", "status", "True", "reason", "Running", "message", "ok",
            "lastTransitionTime", "2026-12-01T12:00:00Z", "observedGeneration", 1))));
    Map<String, String> managers = live.getMetadata().getManagedFields().stream()
        .collect(Collectors.toMap(m -> m.getManager() + "/" + (m.getSubresource() == null ? "" : m.getSubresource()),
            ManagedFieldsEntry::getOperation, (a, b) -> a));
    assertThat(managers).containsEntry(USER + "/", "Apply").containsEntry(OPERATOR + "/", "Apply")
        .containsEntry(OPERATOR + "/status", "Apply");

    // the user re-applies the spec (labels added): the finalizer and status stay
    GenericKubernetesResource again = vm(name, spec("memory", "64Mi", "devices", devices("0000:3b:00.0")));
    again.getMetadata().setLabels(Map.of("team", "a"));
    GenericKubernetesResource after = apply(again, USER);
    assertThat(after.getMetadata().getFinalizers()).containsExactly("vfiovms.vfiovm.dev/finalizer");
    @SuppressWarnings("unchecked")
    Map<String, Object> status = (Map<String, Object>) after.getAdditionalProperties().get("status");
    assertThat(status).containsEntry("phase", "Running").containsEntry("nodeName", "worker-1");
    VfioVm typed = Serialization.unmarshal(Serialization.asJson(after), VfioVm.class);
    assertThat(typed.getStatus().getPinnedBytes()).isEqualTo(67108864L);

    // a spec in the status request is ignored (status subresource), so the operator never edits the spec
    assertThat(specOf(after)).containsEntry("memory", "64Mi");

    // deletion: the operator removes its finalizer from the placed VM (an update the rules must let through)
    client.genericKubernetesResources(VFIOVMS).inNamespace(ns).withName(name).delete();
    client.genericKubernetesResources(VFIOVMS).inNamespace(ns).withName(name)
        .edit(r -> {
          r.getMetadata().setFinalizers(List.of());
          return r;
        });
    assertThat(client.genericKubernetesResources(VFIOVMS).inNamespace(ns).withName(name).get()).isNull();
  }
}
