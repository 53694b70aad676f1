package dev.vfiovm.controller;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.Console;
import dev.vfiovm.api.DeviceResources;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Toleration;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import java.util.Optional;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.SecurityContext;
import io.fabric8.kubernetes.api.model.SecurityContextBuilder;
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
 * The node pod of a VM: one pod (not privileged: see {@link #agentSecurityContext}), bound to the VM's node, running the operator image's
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
  /**
   * The VM's full name and namespace (labels {@link #LABEL_VM_NAME}/{@link #LABEL_VM_NAMESPACE} carry them only
   * while they fit a label value, else a truncated, hashed form: {@link #labelValue}).
   */
  public static final String ANNOTATION_VM_NAME = "vfiovm.dev/vm-name";
  public static final String ANNOTATION_VM_NAMESPACE = "vfiovm.dev/vm-namespace";
  /** The VM's metadata.uid: which VfioVm (not only which name) the pod belongs to (contract K3). */
  public static final String ANNOTATION_VM_UID = "vfiovm.dev/vm-uid";
  /** The longest label value the API server accepts. */
  public static final int MAX_LABEL_VALUE = 63;
  /**
   * The node pod's tolerations: none. A node pod is bound to its node by the operator (spec.nodeName, no
   * scheduler), and placement ({@link Placement}) never picks a node with a NoSchedule/NoExecute taint it does
   * not tolerate, so a tainted node is an admin's "not here" that the operator keeps. (The API server's
   * DefaultTolerationSeconds admission plugin still adds its 300 s not-ready/unreachable NoExecute
   * tolerations to every pod, so a brief NotReady does not evict a running VM at once.)
   */
  public static final List<Toleration> DEFAULT_TOLERATIONS = List.of();
  public static final String NAME = "vfiovm-node";
  public static final String MANAGED_BY = "vfiovm-operator";
  /** Selects every node pod the operator manages. */
  public static final String SELECTOR = LABEL_NAME + "=" + NAME + "," + LABEL_MANAGED_BY + "=" + MANAGED_BY;
  public static final String CONTAINER = "node-agent";
  public static final String REPORT_PATH = "/run/vfiovm/report.json";
  /**
   * Bounds of the agent's JVM (env JAVA_TOOL_OPTIONS of the node-agent container): heap, metaspace, JIT code
   * cache, NIO direct buffers and thread stacks, one GC thread (serial), so its footprint is bounded by
   * {@link #AGENT_MEMORY_BYTES} whatever the host's memory (the JVM's default heap is 1/4 of the host's RAM, which
   * the pod's cgroup limit would then kill).
   */
  public static final String AGENT_JAVA_OPTIONS = "-Xmx128m -XX:MaxMetaspaceSize=128m -XX:ReservedCodeCacheSize=48m"
      + " -XX:MaxDirectMemorySize=32m -Xss512k -XX:+UseSerialGC";
  /**
   * The agent's own memory on top of guest RAM and the VMM in the pod's memory request/limit: its JVM bounded by
   * {@link #AGENT_JAVA_OPTIONS} (heap <= 128 MiB, metaspace <= 128 MiB) plus code cache, thread stacks and the
   * JVM's native memory. Measured with those options: the QEMU-supervising agent running a tiny guest (QMP,
   * console relay, fabric8 report patches tried) VmRSS 118.5 MiB, VmHWM 125.4 MiB; the bounds allow at most
   * ~256 MiB + ~64 MiB native.
   */
  public static final long AGENT_MEMORY_BYTES = 320L << 20;
  /** The least {@code --agent-memory} the operator takes: the agent measured ~125 MiB at its peak (VmHWM), plus headroom. */
  public static final long MIN_AGENT_MEMORY_BYTES = 192L << 20;
  /**
   * QEMU's own memory beyond guest RAM (the pod's cgroup charges both). Measured with QEMU 10.0.2
   * (bookworm-backports) under TCG as VmRSS minus guest RAM, all of guest RAM touched by {@code -mem-prealloc},
   * after 90 s:
   * {@code qemu-system-x86_64 -L .../usr/share/qemu -L /usr/share/seabios -accel tcg -M q35 -m 256M -mem-prealloc
   * -smp N -nodefaults -no-user-config -display none -serial file:LOG [-kernel bzImage -append console=ttyS0]}:
   * firmware only (SeaBIOS, nothing to boot) 40.5 MiB with 1 vCPU, 42.5 MiB with 2; a Linux 6.12 guest (9.4 MiB
   * bzImage) booting to its root mount 88.7 MiB with 1 vCPU, 93.8 MiB with 2 (TCG's translation cache grows with
   * the guest code run). QEMU also keeps kernel and initrd in its own memory for the firmware (fw_cfg), so an
   * initrd adds its size (with a 32 MiB initrd: 121.3 MiB, +32.5). 256 MiB covers a booted guest with a
   * ~100 MiB initrd and a few vCPUs more; under KVM there is no translation cache.
   */
  public static final long VMM_OVERHEAD_BYTES = 256L << 20;
  /** Memory request = limit of each init container (a static busybox copying files: page cache, reclaimable). */
  public static final long INIT_MEMORY_BYTES = 64L << 20;

  /** Where the boot files are in the node-agent container (read-only). */
  public static final String BOOT_DIR = "/vm/boot";
  /**
   * Fixed names of the boot files in {@link #BOOT_DIR}, whatever their names in the image (no collisions, nothing
   * of the tenant's in a path). A qcow2 disk keeps its suffix: the agent names the disk format by it (never
   * probes, so a raw image cannot pose as qcow2 with a backing file).
   */
  public static final String KERNEL_FILE = "kernel";
  public static final String INITRD_FILE = "initrd";
  public static final String DISK_FILE = "disk";
  public static final String QCOW2_DISK_FILE = "disk.qcow2";
  public static final String BOOT_VOLUME = "boot";
  /** The static copy tool the node image carries, and where the first init container puts it. */
  public static final String BUSYBOX_IN_NODE_IMAGE = "/usr/local/bin/vfiovm-busybox";
  public static final String TOOLS_VOLUME = "vfiovm-tools";
  public static final String TOOLS_DIR = "/vfiovm-tools";
  public static final String BUSYBOX = TOOLS_DIR + "/vfiovm-busybox";
  public static final String TOOLS_CONTAINER = "vfiovm-tools";
  /**
   * The API credentials, given to the node-agent container only (the pod does not automount them): a projected
   * token of the VM's own ServiceAccount ({@link NodePodIdentity}: get/patch on this one pod), default
   * audience, valid {@link #TOKEN_EXPIRATION_SECONDS} (the kubelet renews it at 80%).
   */
  public static final String SERVICE_ACCOUNT_VOLUME = "kube-api-access";
  public static final String SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
  /** The shortest expiry the API server accepts (10 min). */
  public static final long TOKEN_EXPIRATION_SECONDS = 600;
  /**
   * Hot-plug (issue 14): the per-VM host directory {@value #CONTROL_HOST_DIR}/&lt;node-pod-name&gt; holding the agent's
   * control socket, mounted at {@value #CONTROL_DIR} in the node-agent container and in the VM's attachment pods
   * only (never bound into the VM sandbox); the agent binds {@value #CONTROL_SOCKET} (0600, dir 0700, peers uid 0).
   */
  public static final String CONTROL_VOLUME = "vfiovm-control";
  public static final String CONTROL_HOST_DIR = "/run/vfiovm/vms";
  public static final String CONTROL_DIR = "/run/vfiovm/control";
  public static final String CONTROL_SOCKET = CONTROL_DIR + "/agent.sock";

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
    return args(vm, hostUid, plan, true);
  }

  private static List<String> args(VfioVm vm, long hostUid, SpecValidation.Plan plan, boolean whole) {
    List<String> args = new ArrayList<>();
    if (whole) {
      args.addAll(List.of(
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
      if (hotpluggable(vm.getSpec().getDmaBackend(), plan.devices())) {
        args.add("--control-socket");
        args.add(CONTROL_SOCKET);
      }
    }
    args.add("--cpus");
    args.add(Integer.toString(plan.cpus()));
    SpecValidation.Boot boot = plan.boot();
    if (boot != null) {
      if (boot.kernel() != null) {
        args.add("--kernel");
        args.add(BOOT_DIR + "/" + KERNEL_FILE);
      }
      if (boot.initrd() != null) {
        args.add("--initrd");
        args.add(BOOT_DIR + "/" + INITRD_FILE);
      }
      if (boot.cmdline() != null) {
        args.add("--cmdline");
        args.add(literal(boot.cmdline()));
      }
      if (boot.disk() != null) {
        args.add("--disk");
        args.add(BOOT_DIR + "/" + diskFile(boot.disk()));
      }
    }
    if (plan.console() == Console.None) {
      args.add("--console");
      args.add("none");
    }
    if (whole) {
      args.add("--report");
      args.add(REPORT_PATH);
      args.add("--report-pod");
      args.add("$(POD_NAMESPACE)/$(POD_NAME)");
    }
    return args;
  }

  private static final List<String> VM_FLAGS = List.of("--cpus", "--kernel", "--initrd", "--cmdline", "--disk", "--console");

  /** The arguments that say what the VM is (vCPUs, boot, console), as {@link #args} emits them. */
  public static List<String> vmArgs(SpecValidation.Plan plan) {
    return args(null, 0, plan, false);
  }

  /** The same arguments of an existing node pod (a pod without --cpus ran one vCPU). */
  public static List<String> vmArgsOf(Pod pod) {
    List<String> args = pod == null || pod.getSpec() == null ? List.of()
        : pod.getSpec().getContainers().stream().filter(c -> CONTAINER.equals(c.getName()))
            .findFirst().map(Container::getArgs).orElse(List.of());
    List<String> vm = new ArrayList<>(vmArgsIn(args));
    if (!vm.contains("--cpus")) {
      vm.addAll(0, List.of("--cpus", "1"));
    }
    return vm;
  }

  private static List<String> vmArgsIn(List<String> args) {
    List<String> vm = new ArrayList<>();
    for (int i = 0; i + 1 < args.size(); i++) {
      if (VM_FLAGS.contains(args.get(i))) {
        vm.add(args.get(i));
        vm.add(args.get(++i));
      }
    }
    return vm;
  }

  /**
   * Whether the VM's agent opens /dev/iommu (backend Iommufd, or Auto with a device at boot: the agent's own rule),
   * so devices can be hot-plugged: only then does the node pod get the control volume and {@code --control-socket}.
   */
  public static boolean hotpluggable(DmaBackend backend, List<String> bootDevices) {
    return backend == DmaBackend.Iommufd || (backend == DmaBackend.Auto && !bootDevices.isEmpty());
  }

  /** The control volume of a VM whose node pod is {@code nodePodName}: hostPath, DirectoryOrCreate. */
  public static Volume controlVolume(String nodePodName) {
    return new VolumeBuilder().withName(CONTROL_VOLUME).withNewHostPath()
        .withPath(CONTROL_HOST_DIR + "/" + nodePodName).withType("DirectoryOrCreate").endHostPath().build();
  }

  public static VolumeMount controlMount() {
    return new VolumeMountBuilder().withName(CONTROL_VOLUME).withMountPath(CONTROL_DIR).build();
  }

  /** Text the kubelet passes as written: $(VAR) in args is expanded, $$ stands for $. */
  static String literal(String text) {
    return text.replace("$", "$$");
  }

  /** The boot files to copy out of the containerDisk image: path in the image -> name in {@link #BOOT_DIR}. */
  public static Map<String, String> bootFiles(SpecValidation.Boot boot) {
    Map<String, String> files = new LinkedHashMap<>();
    if (boot != null) {
      if (boot.kernel() != null) {
        files.put(boot.kernel(), KERNEL_FILE);
      }
      if (boot.initrd() != null) {
        files.put(boot.initrd(), INITRD_FILE);
      }
      if (boot.disk() != null) {
        files.put(boot.disk(), diskFile(boot.disk()));
      }
    }
    return files;
  }

  static String diskFile(String diskPath) {
    return diskPath.toLowerCase(Locale.ROOT).endsWith(".qcow2") ? QCOW2_DISK_FILE : DISK_FILE;
  }

  /** Where to see the VM's console, for status.console. */
  public static String console(String podNamespace, String podName, Console console) {
    return console == Console.None ? "none"
        : "kubectl logs -n " + podNamespace + " " + podName + " -c " + CONTAINER;
  }

  /** Where to see the console of the VM whose node pod is podKey (NS/NAME). */
  public static String console(String podKey, Console console) {
    int slash = podKey.indexOf('/');
    return console(podKey.substring(0, slash), podKey.substring(slash + 1), console);
  }

  /** The console a node pod gives its VM, as its node-agent arguments say. */
  public static Console consoleOf(Pod pod) {
    List<String> args = pod == null || pod.getSpec() == null ? List.of()
        : pod.getSpec().getContainers().stream().filter(c -> CONTAINER.equals(c.getName()))
            .findFirst().map(Container::getArgs).orElse(List.of());
    for (int i = 0; i + 1 < args.size(); i++) {
      if ("--console".equals(args.get(i)) && "none".equals(args.get(i + 1))) {
        return Console.None;
      }
    }
    return Console.Serial;
  }

  public static Map<String, String> labels(VfioVm vm, long hostUid) {
    Map<String, String> labels = new LinkedHashMap<>();
    labels.put(LABEL_NAME, NAME);
    labels.put(LABEL_MANAGED_BY, MANAGED_BY);
    labels.put(LABEL_VM_NAMESPACE, labelValue(vm.getMetadata().getNamespace()));
    labels.put(LABEL_VM_NAME, labelValue(vm.getMetadata().getName()));
    labels.put(LABEL_HOST_UID, Long.toString(hostUid));
    return labels;
  }

  /**
   * A VM's name or namespace as a label value: itself when it is a valid label value (<= 63 characters), else its
   * first 52 characters (up to the last alphanumeric) + "-" + 10 hex digits of its SHA-256: valid, and distinct for
   * distinct names. The full name is in {@link #ANNOTATION_VM_NAME}/{@link #ANNOTATION_VM_NAMESPACE}.
   */
  public static String labelValue(String value) {
    if (value == null || value.isEmpty()) {
      return "";
    }
    if (value.length() <= MAX_LABEL_VALUE && value.matches("[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")) {
      return value;
    }
    String hash = sha256(value).substring(0, 10);
    String head = value.replaceAll("[^-A-Za-z0-9_.]", "-");
    head = head.substring(0, Math.min(head.length(), MAX_LABEL_VALUE - hash.length() - 1));
    head = head.replaceAll("^[^A-Za-z0-9]+", "").replaceAll("[^A-Za-z0-9]+$", "");
    return head.isEmpty() ? hash : head + "-" + hash;
  }

  /** The annotations that name the VM of a node pod (or of its identity objects): NS/NAME, name, namespace, uid. */
  public static Map<String, String> vmAnnotations(VfioVm vm) {
    Map<String, String> annotations = new LinkedHashMap<>();
    annotations.put(ANNOTATION_VM, vmKey(vm));
    annotations.put(ANNOTATION_VM_NAMESPACE, vm.getMetadata().getNamespace());
    annotations.put(ANNOTATION_VM_NAME, vm.getMetadata().getName());
    if (vm.getMetadata().getUid() != null) {
      annotations.put(ANNOTATION_VM_UID, vm.getMetadata().getUid());
    }
    return annotations;
  }

  /**
   * The VfioVm a node pod (or identity object) belongs to: its {@link #ANNOTATION_VM_NAME} and
   * {@link #ANNOTATION_VM_NAMESPACE} annotations, else its {@link #ANNOTATION_VM} annotation (NS/NAME), else (pods
   * of older operators) its labels, which hold the full names whenever those fit a label. Empty for an object
   * that names no VM.
   */
  public static Optional<ResourceID> vmOf(HasMetadata object) {
    if (object == null || object.getMetadata() == null) {
      return Optional.empty();
    }
    Map<String, String> annotations = object.getMetadata().getAnnotations() == null ? Map.of()
        : object.getMetadata().getAnnotations();
    String name = annotations.get(ANNOTATION_VM_NAME);
    String namespace = annotations.get(ANNOTATION_VM_NAMESPACE);
    if (nonEmpty(name) && nonEmpty(namespace)) {
      return Optional.of(new ResourceID(name, namespace));
    }
    String key = annotations.get(ANNOTATION_VM);
    if (key != null && key.indexOf('/') > 0 && key.indexOf('/') < key.length() - 1) {
      int slash = key.indexOf('/');
      return Optional.of(new ResourceID(key.substring(slash + 1), key.substring(0, slash)));
    }
    Map<String, String> labels = object.getMetadata().getLabels() == null ? Map.of() : object.getMetadata().getLabels();
    name = labels.get(LABEL_VM_NAME);
    namespace = labels.get(LABEL_VM_NAMESPACE);
    if (nonEmpty(name) && nonEmpty(namespace)) {
      return Optional.of(new ResourceID(name, namespace));
    }
    return Optional.empty();
  }

  /** {@link #vmOf(HasMetadata)} of a pod. */
  public static Optional<ResourceID> vmOf(Pod pod) {
    return vmOf((HasMetadata) pod);
  }

  private static boolean nonEmpty(String s) {
    return s != null && !s.isEmpty();
  }

  /**
   * The node pod's memory request (= limit): what lives in its memory cgroup. Guest RAM, because QEMU's guest
   * RAM (a memfd, or anonymous memory) is charged to the memory cgroup of the process that faults it in, and
   * that is the VMM, which stays in the pod's cgroup: on cgroup v2 the agent's VM cgroup ({@code VmCgroup}) is
   * a child of the container's cgroup, whose limit covers its children; on cgroup v1 (this host's hybrid
   * layout) the VMM never leaves the container's memory cgroup. Plus the VMM's own memory beyond guest RAM
   * (setting {@code --vmm-overhead}) and the node agent's JVM (setting {@code --agent-memory}).
   */
  public static long podMemoryBytes(long guestMemoryBytes, OperatorSettings settings) {
    return Math.addExact(Math.addExact(guestMemoryBytes, settings.vmmOverheadBytes()), settings.agentMemoryBytes());
  }

  public static Pod build(
      VfioVm vm, long hostUid, String node, SpecValidation.Plan plan, OperatorSettings settings) {
    Quantity memory = new Quantity(Long.toString(podMemoryBytes(plan.memoryBytes(), settings)));
    List<Volume> volumes = new ArrayList<>();
    List<VolumeMount> mounts = new ArrayList<>();
    // No host path of /dev/iommu, /dev/vfio or /sys/bus/pci: the device plugin of the vfiovm-node DaemonSet gives
    // the container exactly the VM's device nodes (the kubelet adds them, with device-cgroup access, on Allocate),
    // and the agent resolves PCI address -> vfioN in the container's own read-only /sys.
    Map<String, Quantity> requests = new LinkedHashMap<>();
    requests.put("memory", memory);
    deviceResources(vm.getSpec().getDmaBackend(), plan.devices()).forEach(r -> requests.put(r, new Quantity("1")));
    List<Container> initContainers = new ArrayList<>();
    SpecValidation.Boot boot = plan.boot();
    if (boot != null) {
      // KubeVirt's containerDisk trick: the tenant's image never runs with privileges or credentials. The
      // trusted node image puts a static copy tool into an emptyDir, then the tenant's image runs only that
      // tool, once per file, as the VM's host UID with nothing else, into the emptyDir the agent reads.
      volumes.add(new VolumeBuilder().withName(TOOLS_VOLUME).withNewEmptyDir().endEmptyDir().build());
      volumes.add(new VolumeBuilder().withName(BOOT_VOLUME).withNewEmptyDir().endEmptyDir().build());
      Container tools = restricted(TOOLS_CONTAINER, settings.nodePodImage(), hostUid,
          List.of(BUSYBOX_IN_NODE_IMAGE, "cp", BUSYBOX_IN_NODE_IMAGE, BUSYBOX),
          List.of(new VolumeMountBuilder().withName(TOOLS_VOLUME).withMountPath(TOOLS_DIR).build()));
      tools.setImagePullPolicy("IfNotPresent"); // as the node-agent container, the same image
      initContainers.add(tools);
      for (Map.Entry<String, String> file : bootFiles(boot).entrySet()) {
        String role = file.getValue().startsWith(DISK_FILE) ? DISK_FILE : file.getValue();
        initContainers.add(restricted("boot-" + role, boot.image(), hostUid,
            List.of(BUSYBOX, "cp", "-L", file.getKey(), BOOT_DIR + "/" + file.getValue()),
            List.of(new VolumeMountBuilder().withName(TOOLS_VOLUME).withMountPath(TOOLS_DIR).withReadOnly(true).build(),
                new VolumeMountBuilder().withName(BOOT_VOLUME).withMountPath(BOOT_DIR).build())));
      }
      mounts.add(new VolumeMountBuilder().withName(BOOT_VOLUME).withMountPath(BOOT_DIR).withReadOnly(true).build());
    }
    // what the service-account admission plugin would mount, but for the agent alone
    volumes.add(new VolumeBuilder().withName(SERVICE_ACCOUNT_VOLUME).withNewProjected().withDefaultMode(0644)
        .addNewSource().withNewServiceAccountToken().withPath("token").withExpirationSeconds(TOKEN_EXPIRATION_SECONDS)
        .endServiceAccountToken().endSource()
        .addNewSource().withNewConfigMap().withName("kube-root-ca.crt")
        .addNewItem().withKey("ca.crt").withPath("ca.crt").endItem().endConfigMap().endSource()
        .addNewSource().withNewDownwardAPI().addNewItem().withPath("namespace").withNewFieldRef()
        .withApiVersion("v1").withFieldPath("metadata.namespace").endFieldRef().endItem().endDownwardAPI().endSource()
        .endProjected().build());
    mounts.add(new VolumeMountBuilder().withName(SERVICE_ACCOUNT_VOLUME).withMountPath(SERVICE_ACCOUNT_DIR)
        .withReadOnly(true).build());
    if (hotpluggable(vm.getSpec().getDmaBackend(), plan.devices())) {
      // the node pod's one hostPath: the per-VM directory of the agent's control socket (docs/node-pod.md)
      volumes.add(controlVolume(podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName())));
      mounts.add(controlMount());
    }
    return new PodBuilder()
        .withNewMetadata()
        .withName(podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName()))
        .withNamespace(settings.nodePodNamespace())
        .withLabels(labels(vm, hostUid))
        .withAnnotations(vmAnnotations(vm))
        .endMetadata()
        .withNewSpec()
        .withNodeName(node)
        .withTolerations(DEFAULT_TOLERATIONS)
        .withRestartPolicy("Never")
        .withServiceAccountName(NodePodIdentity.name(vm, settings))
        .withAutomountServiceAccountToken(false)
        .withTerminationGracePeriodSeconds(30L)
        .withInitContainers(initContainers)
        .addNewContainer()
        .withName(CONTAINER)
        .withImage(settings.nodePodImage())
        .withImagePullPolicy("IfNotPresent")
        .withArgs(args(vm, hostUid, plan))
        .addNewEnv().withName("POD_NAME").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.name").endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("POD_NAMESPACE").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.namespace").endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("JAVA_TOOL_OPTIONS").withValue(AGENT_JAVA_OPTIONS).endEnv()
        .withSecurityContext(agentSecurityContext(settings.nodePodCapabilities()))
        .withNewResources()
        .withRequests(requests)
        .withLimits(requests)
        .endResources()
        .withTerminationMessagePath(REPORT_PATH)
        .withTerminationMessagePolicy("File")
        .withVolumeMounts(mounts)
        .endContainer()
        .withVolumes(volumes)
        .endSpec()
        .build();
  }

  /**
   * The device-plugin resources a VM's node pod requests (requests = limits, 1 each): {@value
   * DeviceResources#IOMMU} when the agent will open /dev/iommu (Iommufd, or Auto with a device: the agent's
   * rule), and {@code vfiovm.dev/pci-...} for each device. IoUring opens no device.
   */
  public static List<String> deviceResources(DmaBackend backend, List<String> devices) {
    List<String> resources = new ArrayList<>();
    if (backend == DmaBackend.IoUring) {
      return resources;
    }
    if (backend == DmaBackend.Iommufd || !devices.isEmpty()) {
      resources.add(DeviceResources.IOMMU);
    }
    devices.forEach(d -> resources.add(DeviceResources.pci(d)));
    return resources;
  }

  /**
   * The node-agent container is not privileged. It runs as root in the host user namespace but holds only the
   * capabilities its own steps need (docs/node-pod.md): SETUID/SETGID (setpriv to the VM's UID, clearing its
   * groups), SETPCAP (setpriv --bounding-set=-all), KILL (signalling the VM process, another UID), SYS_PTRACE
   * (reading the VM process's /proc/PID/fdinfo: the kernel's count of its io_uring-registered memory) and
   * SYS_RESOURCE (raising a VM's RLIMIT_MEMLOCK hard limit; IOMMU_OPTION RLIMIT_MODE per-process) - the set is
   * the operator's --node-pod-capabilities. No escalation: it execs no setuid or file-capability binary.
   * Unconfined seccomp and an unmasked /proc are for the VM sandbox (contract C1): bubblewrap, run as the VM's
   * UID, creates user and PID namespaces and mounts a fresh proc, which the runtime's default seccomp profile
   * and masked /proc paths would refuse.
   */
  static SecurityContext agentSecurityContext(List<String> capabilities) {
    return new SecurityContextBuilder()
        .withPrivileged(false)
        .withAllowPrivilegeEscalation(false)
        .withNewCapabilities().withDrop("ALL").withAdd(capabilities).endCapabilities()
        .withNewSeccompProfile().withType("Unconfined").endSeccompProfile()
        .withProcMount("Unmasked")
        .build();
  }

  /** An init container with nothing: non-root (the VM's UID), no capabilities, no escalation, read-only root. */
  private static Container restricted(String name, String image, long uid, List<String> command,
      List<VolumeMount> mounts) {
    Quantity memory = new Quantity(Long.toString(INIT_MEMORY_BYTES));
    return new ContainerBuilder()
        .withName(name)
        .withImage(image)
        .withCommand(command)
        .withNewSecurityContext()
        .withRunAsUser(uid).withRunAsGroup(uid).withRunAsNonRoot(true)
        .withAllowPrivilegeEscalation(false).withPrivileged(false).withReadOnlyRootFilesystem(true)
        .withNewCapabilities().withDrop("ALL").endCapabilities()
        .withNewSeccompProfile().withType("RuntimeDefault").endSeccompProfile()
        .endSecurityContext()
        .withNewResources()
        .withRequests(Map.of("memory", memory))
        .withLimits(Map.of("memory", memory))
        .endResources()
        .withTerminationMessagePolicy("FallbackToLogsOnError")
        .withVolumeMounts(mounts)
        .build();
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
