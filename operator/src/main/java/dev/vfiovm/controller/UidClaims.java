package dev.vfiovm.controller;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeSet;

/**
 * The book's source of truth: one {@code coordination.k8s.io/v1} Lease per host UID in the operator's
 * namespace, named {@code vfiovm-uid-<uid>}, made with a plain create before the UID reaches any status or pod.
 *
 * <p>Why it holds: the API server refuses a second object of the same name, so two operators (a stale leader
 * and the new one) can never both claim a UID - the loser's create fails and it places nothing on that UID.
 * Only the operator may write Leases in its namespace (tenants may write {@code vfiovms/status}, never these),
 * so a status write claims nothing: after a restart the book is rebuilt from the claims alone. A claim names
 * its VM by namespace/name and {@code metadata.uid} (a re-created VM of the same name is another VM) and holds
 * what was placed: node, memlock limit, devices and the spec as placed - the plan of a placed VM, whatever the
 * live spec or the operator's flags say later.
 */
final class UidClaims {
  static final String COMPONENT = "uid-claim";
  static final String SELECTOR = NodePodShape.LABEL_MANAGED_BY + "=" + NodePodShape.MANAGED_BY + ","
      + NodePodIdentity.LABEL_COMPONENT + "=" + COMPONENT;
  static final String PREFIX = "vfiovm-uid-";
  static final String ANNOTATION_VM = "vfiovm.dev/vm";
  static final String ANNOTATION_VM_UID = "vfiovm.dev/vm-uid";
  static final String ANNOTATION_NODE = "vfiovm.dev/node";
  static final String ANNOTATION_LIMIT = "vfiovm.dev/memlock-limit-bytes";
  static final String ANNOTATION_DEVICES = "vfiovm.dev/devices";
  static final String ANNOTATION_SPEC = "vfiovm.dev/placed-spec";
  /** Hot-plug: the devices plugged into the running VM (JSON list) and the limit it was placed with. */
  static final String ANNOTATION_HOTPLUGGED = "vfiovm.dev/hotplugged-devices";
  static final String ANNOTATION_BOOT_LIMIT = "vfiovm.dev/boot-memlock-limit-bytes";
  private static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  private UidClaims() {}

  /** One VM's claim: who (NS/NAME, metadata.uid) holds which UID, and what was placed. */
  record Claim(String vmKey, String vmUid, long hostUid, String node, long memlockLimitBytes, List<String> devices,
      VfioVmSpec spec, List<String> hotplugged, long bootLimitBytes) {
    Claim {
      devices = List.copyOf(devices);
      hotplugged = hotplugged == null ? List.of() : List.copyOf(hotplugged);
    }

    /** A claim with nothing hot-plugged: the limit is the one it was placed with. */
    Claim(String vmKey, String vmUid, long hostUid, String node, long memlockLimitBytes, List<String> devices,
        VfioVmSpec spec) {
      this(vmKey, vmUid, hostUid, node, memlockLimitBytes, devices, spec, List.of(), memlockLimitBytes);
    }

    /** The same claim after a hot-plug change: the entry's devices and limit, the hot-plugged devices. */
    Claim withHotplug(Ledger.Entry entry, List<String> hotplugged) {
      return new Claim(vmKey, vmUid, hostUid, node, entry.memlockLimitBytes(), entry.devices(), spec, hotplugged,
          bootLimitBytes);
    }

    /** The boot devices: those of the spec as placed (the node pod's). */
    List<String> bootDevices() {
      return spec == null || spec.getDevices() == null ? devices.stream().filter(d -> !hotplugged.contains(d)).toList()
          : spec.getDevices().stream().map(dev.vfiovm.api.DeviceSpec::getPciAddress).toList();
    }

    Ledger.Entry entry() {
      return new Ledger.Entry(hostUid, node, memlockLimitBytes, devices);
    }

    /** Whether this claim is that VM's (same namespace/name and the same metadata.uid). */
    boolean of(VfioVm vm) {
      return vmKey.equals(NodePodShape.vmKey(vm)) && Objects.equals(vmUid, vm.getMetadata().getUid());
    }

    String vmNamespace() {
      return vmKey.substring(0, vmKey.indexOf('/'));
    }

    String vmName() {
      return vmKey.substring(vmKey.indexOf('/') + 1);
    }
  }

  static String name(long hostUid) {
    return PREFIX + hostUid;
  }

  static Claim of(VfioVm vm, Ledger.Entry entry) {
    return new Claim(NodePodShape.vmKey(vm), vm.getMetadata().getUid(), entry.hostUid(), entry.node(),
        entry.memlockLimitBytes(), entry.devices(), vm.getSpec());
  }

  static Lease toLease(Claim claim, String namespace) {
    Map<String, String> annotations = new LinkedHashMap<>();
    annotations.put(ANNOTATION_VM, claim.vmKey());
    annotations.put(ANNOTATION_VM_UID, claim.vmUid() == null ? "" : claim.vmUid());
    annotations.put(ANNOTATION_NODE, claim.node());
    annotations.put(ANNOTATION_LIMIT, Long.toString(claim.memlockLimitBytes()));
    try {
      annotations.put(ANNOTATION_DEVICES, JSON.writeValueAsString(claim.devices()));
      annotations.put(ANNOTATION_SPEC, JSON.writeValueAsString(claim.spec()));
      if (!claim.hotplugged().isEmpty() || claim.bootLimitBytes() != claim.memlockLimitBytes()) {
        annotations.put(ANNOTATION_HOTPLUGGED, JSON.writeValueAsString(claim.hotplugged()));
        annotations.put(ANNOTATION_BOOT_LIMIT, Long.toString(claim.bootLimitBytes()));
      }
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
    return new LeaseBuilder()
        .withNewMetadata()
        .withName(name(claim.hostUid()))
        .withNamespace(namespace)
        .addToLabels(NodePodShape.LABEL_MANAGED_BY, NodePodShape.MANAGED_BY)
        .addToLabels(NodePodIdentity.LABEL_COMPONENT, COMPONENT)
        .addToLabels(NodePodShape.LABEL_HOST_UID, Long.toString(claim.hostUid()))
        .withAnnotations(annotations)
        .endMetadata()
        .withNewSpec().withHolderIdentity(claim.vmUid()).endSpec()
        .build();
  }

  /**
   * A claim Lease's annotations after a hot-plug change to {@code claim}: {@code current} with the claim's written
   * over it, the hot-plug ones always (an emptied list must replace the last one, which {@link #toLease} leaves
   * out for a claim that never hot-plugged).
   */
  static Map<String, String> hotplugAnnotations(Map<String, String> current, Claim claim, String namespace) {
    Map<String, String> a = new LinkedHashMap<>(current == null ? Map.of() : current);
    a.putAll(toLease(claim, namespace).getMetadata().getAnnotations());
    try {
      a.put(ANNOTATION_HOTPLUGGED, JSON.writeValueAsString(claim.hotplugged()));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
    a.put(ANNOTATION_BOOT_LIMIT, Long.toString(claim.bootLimitBytes()));
    return a;
  }

  /** The claim a Lease holds, or null if it is none (not ours, unreadable). */
  static Claim parse(Lease lease) {
    String name = lease.getMetadata().getName();
    Map<String, String> a = lease.getMetadata().getAnnotations();
    if (name == null || !name.startsWith(PREFIX) || a == null || a.get(ANNOTATION_VM) == null
        || !a.get(ANNOTATION_VM).contains("/")) {
      return null;
    }
    try {
      long uid = Long.parseLong(name.substring(PREFIX.length()));
      List<String> devices = a.get(ANNOTATION_DEVICES) == null ? List.of()
          : JSON.readValue(a.get(ANNOTATION_DEVICES), new TypeReference<List<String>>() {});
      VfioVmSpec spec = a.get(ANNOTATION_SPEC) == null ? null : JSON.readValue(a.get(ANNOTATION_SPEC), VfioVmSpec.class);
      String vmUid = a.get(ANNOTATION_VM_UID);
      long limit = Long.parseLong(a.get(ANNOTATION_LIMIT));
      List<String> hotplugged = a.get(ANNOTATION_HOTPLUGGED) == null ? List.of()
          : JSON.readValue(a.get(ANNOTATION_HOTPLUGGED), new TypeReference<List<String>>() {});
      long bootLimit = a.get(ANNOTATION_BOOT_LIMIT) == null ? limit : Long.parseLong(a.get(ANNOTATION_BOOT_LIMIT));
      return new Claim(a.get(ANNOTATION_VM), vmUid == null || vmUid.isEmpty() ? null : vmUid, uid,
          a.get(ANNOTATION_NODE), limit, devices, spec, hotplugged, bootLimit);
    } catch (JsonProcessingException | RuntimeException e) {
      return null;
    }
  }

  /**
   * The UID the Lease claims when it is a readable claim of a VM other than {@code vm}, else null - what
   * {@link #parse} then {@link Claim#of} say, without reading the JSON annotations (called per admission for
   * every claim).
   */
  static Long uidHeldByOther(Lease lease, VfioVm vm) {
    String name = lease.getMetadata().getName();
    Map<String, String> a = lease.getMetadata().getAnnotations();
    String key = a == null ? null : a.get(ANNOTATION_VM);
    if (name == null || !name.startsWith(PREFIX) || key == null || !key.contains("/")
        || a.get(ANNOTATION_LIMIT) == null) {
      return null;
    }
    long uid;
    try {
      uid = Long.parseLong(name.substring(PREFIX.length()));
      Long.parseLong(a.get(ANNOTATION_LIMIT));
    } catch (NumberFormatException e) {
      return null;
    }
    String vmUid = a.get(ANNOTATION_VM_UID);
    boolean mine = key.equals(NodePodShape.vmKey(vm))
        && Objects.equals(vmUid == null || vmUid.isEmpty() ? null : vmUid, vm.getMetadata().getUid());
    return mine ? null : uid;
  }

  /**
   * The claim an existing node pod proves (an operator from before the claims, or one that crashed between
   * creating a pod and ... never: the claim comes first): UID from its label, node from its binding, limit and
   * devices from the agent's arguments; the spec as placed is unknown, so the live one stands in.
   */
  static Claim fromPod(VfioVm vm, Pod pod) {
    Long uid = VfioVmReconciler.hostUidOf(pod);
    if (uid == null || pod.getSpec() == null || pod.getSpec().getNodeName() == null) {
      return null;
    }
    List<String> args = pod.getSpec().getContainers().stream().filter(c -> NodePodShape.CONTAINER.equals(c.getName()))
        .findFirst().map(c -> c.getArgs()).orElse(List.of());
    Long limit = null;
    List<String> devices = new ArrayList<>();
    for (int i = 0; i + 1 < args.size(); i++) {
      if ("--memlock".equals(args.get(i))) {
        try {
          limit = Long.parseLong(args.get(i + 1));
        } catch (NumberFormatException e) {
          return null;
        }
      } else if ("--device".equals(args.get(i))) {
        devices.add(args.get(i + 1));
      }
    }
    return limit == null ? null
        : new Claim(NodePodShape.vmKey(vm), vm.getMetadata().getUid(), uid, pod.getSpec().getNodeName(), limit,
            devices, vm.getSpec());
  }

  /**
   * The spec fields the live spec changed against the spec as placed ({@code spec.memory}, ...), sorted; empty
   * when nothing changed. Every field counts: the node pod reads nearly all of them (NodePodShape.args).
   */
  static List<String> changedFields(VfioVmSpec placed, VfioVmSpec live) {
    JsonNode a = JSON.valueToTree(placed);
    JsonNode b = JSON.valueToTree(live);
    TreeSet<String> names = new TreeSet<>();
    for (JsonNode n : List.of(a, b)) {
      if (n != null && n.isObject()) {
        for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
          names.add(it.next());
        }
      }
    }
    List<String> changed = new ArrayList<>();
    for (String name : names) {
      if (!normal(a == null ? null : a.get(name)).equals(normal(b == null ? null : b.get(name)))) {
        changed.add("spec." + name);
      }
    }
    return changed;
  }

  /** Absent, null, an empty list/map and "" are one value (what the API server's defaulting makes of them). */
  private static JsonNode normal(JsonNode n) {
    if (n == null || n.isNull() || (n.isContainerNode() && n.isEmpty()) || (n.isTextual() && n.asText().isEmpty())) {
      return JSON.nullNode();
    }
    return n;
  }
}
