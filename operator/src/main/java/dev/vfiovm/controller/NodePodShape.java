package dev.vfiovm.controller;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeBuilder;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.VolumeMountBuilder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The node pod of a VM: one privileged pod, bound to the VM's node, running the operator image's
 * {@code node-agent} entry point with the VM's plan as arguments. It lives in the operator's namespace (so VM
 * namespaces can stay Pod-Security restricted) and is tied to its VM by labels and the VM's finalizer, since
 * an ownerReference cannot cross namespaces.
 */
public final class NodePodShape {
  public static final String LABEL_NAME = "app.kubernetes.io/name";
  public static final String LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
  public static final String LABEL_VM_NAMESPACE = "vfiovm.dev/vm-namespace";
  public static final String LABEL_VM_NAME = "vfiovm.dev/vm-name";
  public static final String LABEL_HOST_UID = "vfiovm.dev/host-uid";
  public static final String ANNOTATION_VM = "vfiovm.dev/vm";
  public static final String NAME = "vfiovm-node";
  public static final String MANAGED_BY = "vfiovm-operator";
  /** Selects every node pod the operator manages. */
  public static final String SELECTOR = LABEL_NAME + "=" + NAME + "," + LABEL_MANAGED_BY + "=" + MANAGED_BY;
  public static final String CONTAINER = "node-agent";
  public static final String REPORT_PATH = "/run/vfiovm/report.json";
  /** The agent's own memory (JVM) on top of guest RAM in the pod's memory request/limit. */
  public static final long AGENT_MEMORY_BYTES = 256L << 20;

  private NodePodShape() {}

  /**
   * Pod name: the VM name plus a hash of NS/NAME (names alone collide across namespaces), within 63 chars so
   * it is also a valid hostname.
   */
  public static String podName(String vmNamespace, String vmName) {
    String hash = sha256(vmNamespace + "/" + vmName).substring(0, 10);
    String prefix = "vfiovm-" + vmName.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9-]", "-");
    int max = 63 - hash.length() - 1;
    if (prefix.length() > max) {
      prefix = prefix.substring(0, max);
    }
    prefix = prefix.replaceAll("-+$", "");
    return prefix + "-" + hash;
  }

  /** Command-line arguments of the node agent (the node-agent CLI contract). */
  public static List<String> args(VfioVm vm, long hostUid, SpecValidation.Plan plan) {
    List<String> args = new ArrayList<>(List.of(
        "node-agent",
        "--vm", vmKey(vm),
        "--host-uid", Long.toString(hostUid),
        "--memory", Long.toString(plan.memoryBytes()),
        "--memlock", Long.toString(plan.memlockLimitBytes())));
    for (String device : plan.devices()) {
      args.add("--device");
      args.add(device);
    }
    args.add("--accounting");
    args.add(vm.getSpec().getAccounting() == Accounting.PerUser ? "per-user" : "per-process");
    args.add("--dma-backend");
    args.add(switch (vm.getSpec().getDmaBackend()) {
      case Iommufd -> "iommufd";
      case IoUring -> "io-uring";
      case Auto -> "auto";
    });
    args.add("--report");
    args.add(REPORT_PATH);
    args.add("--report-pod");
    args.add("$(POD_NAMESPACE)/$(POD_NAME)");
    if (!vm.getSpec().getVmCommand().isEmpty()) {
      args.add("--vm-command");
      args.addAll(vm.getSpec().getVmCommand());
    }
    return args;
  }

  public static Map<String, String> labels(VfioVm vm, long hostUid) {
    Map<String, String> labels = new LinkedHashMap<>();
    labels.put(LABEL_NAME, NAME);
    labels.put(LABEL_MANAGED_BY, MANAGED_BY);
    labels.put(LABEL_VM_NAMESPACE, vm.getMetadata().getNamespace());
    labels.put(LABEL_VM_NAME, vm.getMetadata().getName());
    labels.put(LABEL_HOST_UID, Long.toString(hostUid));
    return labels;
  }

  public static Pod build(
      VfioVm vm, long hostUid, String node, SpecValidation.Plan plan, OperatorSettings settings) {
    Quantity memory = new Quantity(Long.toString(plan.memoryBytes() + AGENT_MEMORY_BYTES));
    List<Volume> volumes = new ArrayList<>();
    List<VolumeMount> mounts = new ArrayList<>();
    // IoUring pins no device: it needs no host path. Iommufd insists on the devices (the pod does not start
    // without them, and the kubelet says so); Auto takes them when present (type unchecked).
    DmaBackend backend = vm.getSpec().getDmaBackend();
    if (backend != DmaBackend.IoUring) {
      boolean strict = backend == DmaBackend.Iommufd;
      hostPath(volumes, mounts, "dev-iommu", "/dev/iommu", strict ? "CharDevice" : "");
      hostPath(volumes, mounts, "dev-vfio", "/dev/vfio", strict ? "Directory" : "");
      hostPath(volumes, mounts, "sys-bus-pci", "/sys/bus/pci", strict ? "Directory" : "");
    }
    return new PodBuilder()
        .withNewMetadata()
        .withName(podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName()))
        .withNamespace(settings.nodePodNamespace())
        .withLabels(labels(vm, hostUid))
        .withAnnotations(Map.of(ANNOTATION_VM, vmKey(vm)))
        .endMetadata()
        .withNewSpec()
        .withNodeName(node)
        .withRestartPolicy("Never")
        .withServiceAccountName(settings.nodePodServiceAccount())
        .withTerminationGracePeriodSeconds(30L)
        .addNewContainer()
        .withName(CONTAINER)
        .withImage(settings.nodePodImage())
        .withImagePullPolicy("IfNotPresent")
        .withArgs(args(vm, hostUid, plan))
        .addNewEnv().withName("POD_NAME").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.name").endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("POD_NAMESPACE").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.namespace").endFieldRef().endValueFrom().endEnv()
        .withNewSecurityContext().withPrivileged(true).endSecurityContext()
        .withNewResources()
        .withRequests(Map.of("memory", memory))
        .withLimits(Map.of("memory", memory))
        .endResources()
        .withTerminationMessagePath(REPORT_PATH)
        .withTerminationMessagePolicy("File")
        .withVolumeMounts(mounts)
        .endContainer()
        .withVolumes(volumes)
        .endSpec()
        .build();
  }

  private static void hostPath(List<Volume> volumes, List<VolumeMount> mounts, String name, String path, String type) {
    volumes.add(new VolumeBuilder().withName(name).withNewHostPath().withPath(path).withType(type).endHostPath().build());
    mounts.add(new VolumeMountBuilder().withName(name).withMountPath(path).build());
  }

  public static String vmKey(VfioVm vm) {
    return vm.getMetadata().getNamespace() + "/" + vm.getMetadata().getName();
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
