package dev.vfiovm.controller;

import dev.vfiovm.api.DeviceResources;
import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.VolumeBuilder;
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
import java.util.Optional;

/**
 * A hot-plugged device's attachment pod (issue 14), and the detach pod of a boot-time device removed from the
 * spec. A container's devices are fixed when it is created, so the VM's node pod can never open a device the
 * kubelet did not give it at start: the attachment pod gets the device from the device plugin
 * ({@code vfiovm.dev/pci-DDDD-BB-SS.F: 1}), runs {@code vfiovm.jar attach-device}, which opens the cdev and hands
 * the fd to the VM's node agent over its control socket (the per-VM host directory both mount, never the VM
 * sandbox); it stays until deleted (SIGTERM: unplug). The kubelet frees the device when the pod ends. A detach pod
 * has the same shape without the device resource and runs {@code --unplug-only}.
 *
 * <p>Root (the socket's peer check accepts uid 0 only) without any capability, no escalation, read-only root,
 * RuntimeDefault seccomp, no API credentials.
 */
public final class AttachmentPodShape {
  public static final String LABEL_ROLE = "vfiovm.dev/role";
  public static final String ROLE_ATTACH = "device-attachment";
  public static final String ROLE_DETACH = "device-detach";
  static final String NAME = "vfiovm-device";
  /** Selects attachment and detach pods. */
  public static final String SELECTOR = LABEL_ROLE + " in (" + ROLE_ATTACH + "," + ROLE_DETACH + ")," + NodePodShape.LABEL_MANAGED_BY
      + "=" + NodePodShape.MANAGED_BY;
  public static final String ANNOTATION_PCI_ADDRESS = "vfiovm.dev/pci-address";
  static final String CONTAINER = "attach";
  static final long MEMORY_BYTES = 192L << 20;
  static final long GRACE_SECONDS = 60;
  /** The short-lived JVM's bounds within {@link #MEMORY_BYTES}. */
  static final String JAVA_OPTIONS = "-Xmx64m -XX:MaxMetaspaceSize=64m -XX:ReservedCodeCacheSize=16m -Xss512k"
      + " -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData";

  private AttachmentPodShape() {}

  /** DDDD-BB-SS-F, lower case: a name part. */
  static String bdfPart(String pciAddress) {
    return pciAddress.toLowerCase(Locale.ROOT).replace(':', '-').replace('.', '-');
  }

  /** {@code <node-pod-name>-dev-<DDDD-BB-SS-F>} (detach: {@code -det-}), the node-pod part shortened to fit 63. */
  static String name(String nodePodName, String pciAddress, boolean detach) {
    String tail = (detach ? "-det-" : "-dev-") + bdfPart(pciAddress);
    int max = NodePodShape.MAX_LABEL_VALUE - tail.length();
    String head = nodePodName;
    if (head.length() > max) {
      String hash = sha256(nodePodName).substring(0, 10);
      head = nodePodName.substring(0, max - hash.length() - 1).replaceAll("-+$", "") + "-" + hash;
    }
    return head + tail;
  }

  static Pod attachment(VfioVm vm, long hostUid, String node, String pciAddress, long memlockBytes,
      long unplugMemlockBytes, OperatorSettings settings) {
    return build(vm, hostUid, node, pciAddress, memlockBytes, unplugMemlockBytes, false, settings);
  }

  static Pod detach(VfioVm vm, long hostUid, String node, String pciAddress, long unplugMemlockBytes,
      OperatorSettings settings) {
    return build(vm, hostUid, node, pciAddress, unplugMemlockBytes, unplugMemlockBytes, true, settings);
  }

  static List<String> args(String pciAddress, long memlockBytes, long unplugMemlockBytes, boolean detach) {
    List<String> args = new ArrayList<>(List.of("attach-device", "--control-socket", NodePodShape.CONTROL_SOCKET,
        "--device", pciAddress, "--memlock", Long.toString(memlockBytes),
        "--unplug-memlock", Long.toString(unplugMemlockBytes)));
    if (detach) {
      args.add("--unplug-only");
    }
    return args;
  }

  private static Pod build(VfioVm vm, long hostUid, String node, String pciAddress, long memlockBytes,
      long unplugMemlockBytes, boolean detach, OperatorSettings settings) {
    String nodePod = NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName());
    Map<String, Quantity> resources = new LinkedHashMap<>();
    resources.put("memory", new Quantity(Long.toString(MEMORY_BYTES)));
    if (!detach) {
      resources.put(DeviceResources.pci(pciAddress), new Quantity("1"));
    }
    Map<String, String> labels = new LinkedHashMap<>(NodePodShape.labels(vm, hostUid));
    labels.put(NodePodShape.LABEL_NAME, NAME);
    labels.put(LABEL_ROLE, detach ? ROLE_DETACH : ROLE_ATTACH);
    Map<String, String> annotations = new LinkedHashMap<>(NodePodShape.vmAnnotations(vm));
    annotations.put(ANNOTATION_PCI_ADDRESS, pciAddress);
    return new PodBuilder()
        .withNewMetadata()
        .withName(name(nodePod, pciAddress, detach))
        .withNamespace(settings.nodePodNamespace())
        .withLabels(labels)
        .withAnnotations(annotations)
        .endMetadata()
        .withNewSpec()
        .withNodeName(node)
        .withTolerations(NodePodShape.DEFAULT_TOLERATIONS)
        .withRestartPolicy("Never")
        .withAutomountServiceAccountToken(false)
        .withTerminationGracePeriodSeconds(GRACE_SECONDS)
        .addNewContainer()
        .withName(CONTAINER)
        .withImage(settings.nodePodImage())
        .withImagePullPolicy("IfNotPresent")
        .withArgs(args(pciAddress, memlockBytes, unplugMemlockBytes, detach))
        .addNewEnv().withName("JAVA_TOOL_OPTIONS").withValue(JAVA_OPTIONS).endEnv()
        .withNewSecurityContext()
        .withRunAsUser(0L).withRunAsNonRoot(false)
        .withPrivileged(false).withAllowPrivilegeEscalation(false).withReadOnlyRootFilesystem(true)
        .withNewCapabilities().withDrop("ALL").endCapabilities()
        .withNewSeccompProfile().withType("RuntimeDefault").endSeccompProfile()
        .endSecurityContext()
        .withNewResources().withRequests(resources).withLimits(resources).endResources()
        .withTerminationMessagePolicy("FallbackToLogsOnError")
        .withVolumeMounts(NodePodShape.controlMount(),
            new VolumeMountBuilder().withName("tmp").withMountPath("/tmp").build())
        .endContainer()
        .withVolumes(NodePodShape.controlVolume(nodePod),
            // the JVM's and JNA's scratch space (the root filesystem is read-only)
            new VolumeBuilder().withName("tmp").withNewEmptyDir().withSizeLimit(new Quantity("16Mi")).endEmptyDir().build())
        .endSpec()
        .build();
  }

  /** The device a pod attaches or detaches, or empty. */
  public static Optional<String> deviceOf(Pod pod) {
    Map<String, String> a = pod.getMetadata().getAnnotations();
    return Optional.ofNullable(a == null ? null : a.get(ANNOTATION_PCI_ADDRESS));
  }

  public static boolean isDetach(Pod pod) {
    Map<String, String> l = pod.getMetadata().getLabels();
    return l != null && ROLE_DETACH.equals(l.get(LABEL_ROLE));
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
