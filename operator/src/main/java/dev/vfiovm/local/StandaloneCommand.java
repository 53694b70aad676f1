package dev.vfiovm.local;

import dev.vfiovm.api.CrdInstaller;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.fabric8.kubeapitest.KubeAPIServer;
import io.fabric8.kubeapitest.KubeAPIServerConfigBuilder;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The main job where no cluster is configured: a real kube-apiserver + etcd (started through kube-api-test
 * from the cached binaries), this host registered as the one Node, the operator as its own process exactly
 * as in a cluster, and {@link LocalPodRunner} playing the kubelet so node pods really run the node agent on
 * this kernel. Example VfioVms are applied and their status printed as it changes.
 */
@Command(
    name = "standalone",
    mixinStandardHelpOptions = true,
    description = {
      "Run vfiovm on this host without a cluster: embedded kube-apiserver, the operator, and node pods run as",
      "local processes (root needed: node agents set limits and enter user namespaces). Ctrl-C stops it all."
    })
public final class StandaloneCommand implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(StandaloneCommand.class);
  private static final Duration API_SERVER_STARTUP = Duration.ofSeconds(120);
  static final String NODE_POD_NAMESPACE = "vfiovm-system";

  @Option(names = "--kube-api-test-dir", description = "Where kube-apiserver/etcd binaries are cached "
      + "(k8s/<version>-linux-amd64/). Default: ${DEFAULT-VALUE}; build them with hack/setup.sh.",
      defaultValue = "${env:KUBE_API_TEST_DIR:-${sys:user.home}/.cache/vfiovm/kubeapitest}")
  Path kubeApiTestDir;

  @Option(names = "--work-dir", description = "State: kubeconfig, pod logs. Default: ${DEFAULT-VALUE}",
      defaultValue = "${sys:user.home}/.cache/vfiovm/standalone")
  Path workDir;

  @Option(names = "--examples", description = "VfioVm YAML to apply (file); default: the bundled examples, "
      + "sized for a host whose memlock hard limit is small (a few MiB).")
  Path examples;

  @Option(names = "--image-dir", paramLabel = "REF=DIR",
      description = "Repeatable. There is no container runtime here: the image REF (e.g. a VfioVm's "
          + "spec.boot.containerDisk.image) is the directory DIR, standing for its root filesystem; boot files "
          + "are copied from there. A VM whose image has no directory fails with ErrImagePull.")
  List<String> imageDirOptions = new ArrayList<>();

  @Option(names = "--memlock-overhead", defaultValue = "1Mi",
      description = "Operator setting memlock overhead for this run (default ${DEFAULT-VALUE}: fits hosts "
          + "without CAP_SYS_RESOURCE, whose hard limit the node agent cannot raise).")
  String memlockOverhead;

  @Option(names = "--host-reserve", defaultValue = "0",
      description = "Operator setting host reserve for this node (default ${DEFAULT-VALUE}).")
  String hostReserve;

  @Option(names = "--uid-range-start", defaultValue = "1879048192",
      description = "Operator setting: first host UID handed to VMs (default ${DEFAULT-VALUE}).")
  long uidRangeStart;

  @Option(names = "--check", description = "Apply the examples, wait until each is Running or Pending as "
      + "expected, print the table, delete them, wait until everything is released, and exit (0 = all as expected).")
  boolean check;

  @Option(names = "--timeout", defaultValue = "180", description = "Seconds --check waits (default ${DEFAULT-VALUE}).")
  long timeoutSeconds;

  @Override
  public Integer call() throws Exception {
    Map<String, Path> images;
    try {
      images = imageDirs();
    } catch (IllegalArgumentException e) {
      System.err.println("standalone: " + e.getMessage());
      return 2;
    }
    Files.createDirectories(workDir);
    Path kubeconfig = workDir.resolve("kubeconfig");
    KubeAPIServer apiServer = new KubeAPIServer(KubeAPIServerConfigBuilder.anAPIServerConfig()
        .withOfflineMode(true)
        .withTestDir(kubeApiTestDir.toString())
        .withUpdateKubeConfig(false)
        .withStartupTimeout((int) API_SERVER_STARTUP.toMillis())
        .build());
    System.out.println("starting kube-apiserver + etcd from " + kubeApiTestDir);
    ApiServerStart.start(apiServer, API_SERVER_STARTUP);
    Process operator = null;
    try (KubernetesClient client = new KubernetesClientBuilder()
        .withConfig(Config.fromKubeconfig(apiServer.getKubeConfigYaml())).build()) {
      Files.writeString(kubeconfig, apiServer.getKubeConfigYaml(), StandardCharsets.UTF_8);
      String node = registerNode(client);
      installCrd(client);
      client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(NODE_POD_NAMESPACE)
          .endMetadata().build()).serverSideApply();
      operator = startOperator(kubeconfig);
      try (LocalPodRunner kubelet = new LocalPodRunner(client, node, javaCommand(), workDir.resolve("pods"),
          Map.of("KUBECONFIG", kubeconfig.toString()), images)) {
        kubelet.start();
        List<HasMetadata> vms = applyExamples(client);
        System.out.printf("%nkubectl: export KUBECONFIG=%s; %s get vvm -A%n%n", kubeconfig,
            kubectl().map(Path::toString).orElse("kubectl"));
        if (check) {
          return runCheck(client, vms);
        }
        watchForever(client);
        return 0;
      }
    } finally {
      if (operator != null) {
        operator.destroy();
        operator.waitFor(30, TimeUnit.SECONDS);
      }
      apiServer.stop();
    }
  }

  Map<String, Path> imageDirs() {
    Map<String, Path> dirs = new LinkedHashMap<>();
    for (String option : imageDirOptions) {
      Map.Entry<String, Path> entry = LocalPodRunner.imageDir(option);
      dirs.put(entry.getKey(), entry.getValue());
    }
    return dirs;
  }

  private java.util.Optional<Path> kubectl() {
    try (var dirs = Files.list(kubeApiTestDir.resolve("k8s"))) {
      return dirs.map(d -> d.resolve("kubectl")).filter(Files::isExecutable).findFirst();
    } catch (IOException e) {
      return java.util.Optional.empty();
    }
  }

  /** This host as the one Node, with its real memory as capacity (the budget's base). */
  private String registerNode(KubernetesClient client) throws IOException {
    String name = InetAddress.getLocalHost().getHostName().toLowerCase(Locale.ROOT);
    long memTotal = HostMemory.memTotalBytes();
    Quantity memory = new Quantity(Long.toString(memTotal));
    Node node = new NodeBuilder().withNewMetadata().withName(name)
        .addToLabels("kubernetes.io/hostname", name)
        .addToAnnotations("vfiovm.dev/host-reserve", hostReserve)
        .endMetadata().build();
    client.nodes().resource(node).serverSideApply();
    client.nodes().withName(name).editStatus(n -> new NodeBuilder(n).withNewStatus()
        .addToCapacity("memory", memory).addToCapacity("cpu", new Quantity(
            Integer.toString(Runtime.getRuntime().availableProcessors())))
        .addToAllocatable("memory", memory).addToAllocatable("cpu", new Quantity(
            Integer.toString(Runtime.getRuntime().availableProcessors())))
        .addNewCondition().withType("Ready").withStatus("True").withReason("StandaloneNode")
        .withLastHeartbeatTime(Instant.now().toString()).endCondition()
        .endStatus().build());
    System.out.printf("node %s registered: %d MiB allocatable%n", name, memTotal >> 20);
    return name;
  }

  private void installCrd(KubernetesClient client) throws IOException {
    try (InputStream crd = VfioVm.class.getResourceAsStream("/META-INF/fabric8/vfiovms.vfiovm.dev-v1.yml")) {
      CrdInstaller.install(client, Serialization.unmarshal(crd, CustomResourceDefinition.class), "vfiovm-standalone");
    }
  }

  /** This jar's own java command: node pods' and the operator's entry point. */
  static List<String> javaCommand() {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    return List.of(java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
        System.getProperty("java.class.path"), "dev.vfiovm.Main");
  }

  private Process startOperator(Path kubeconfig) throws IOException {
    List<String> command = new ArrayList<>(javaCommand());
    command.add("operator");
    ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true)
        .redirectOutput(workDir.resolve("operator.log").toFile());
    Map<String, String> env = builder.environment();
    env.put("KUBECONFIG", kubeconfig.toString());
    env.put("VFIOVM_NODE_POD_NAMESPACE", NODE_POD_NAMESPACE);
    env.put("VFIOVM_MEMLOCK_OVERHEAD", memlockOverhead);
    env.put("VFIOVM_UID_RANGE_START", Long.toString(uidRangeStart));
    env.put("VFIOVM_NODE_POD_IMAGE", "local/vfiovm:standalone");
    env.put("VFIOVM_LEADER_ELECTION", "false");
    env.put("VFIOVM_HTTP_PORT", "0");
    Process process = builder.start();
    System.out.println("operator started, pid " + process.pid() + ", log " + workDir.resolve("operator.log"));
    return process;
  }

  private List<HasMetadata> applyExamples(KubernetesClient client) throws IOException {
    try (InputStream in = examples != null ? Files.newInputStream(examples)
        : StandaloneCommand.class.getResourceAsStream("standalone-examples.yaml")) {
      List<HasMetadata> items = client.load(in).items();
      for (HasMetadata item : items) {
        if (item.getMetadata().getNamespace() == null) {
          item.getMetadata().setNamespace("default");
        }
        client.resource(item).serverSideApply();
      }
      System.out.println("applied " + items.size() + " example VfioVm(s)");
      return items;
    }
  }

  /** Expected phase of an example: annotation vfiovm.dev/expect-phase, else Running. */
  private static Phase expected(HasMetadata vm) {
    Map<String, String> annotations = vm.getMetadata().getAnnotations();
    String phase = annotations == null ? null : annotations.get("vfiovm.dev/expect-phase");
    return phase == null ? Phase.Running : Phase.valueOf(phase);
  }

  private int runCheck(KubernetesClient client, List<HasMetadata> vms) {
    Instant deadline = Instant.now().plusSeconds(timeoutSeconds);
    Map<String, Phase> expect = new LinkedHashMap<>();
    vms.forEach(vm -> expect.put(vm.getMetadata().getNamespace() + "/" + vm.getMetadata().getName(), expected(vm)));
    String last = "";
    boolean reached = false;
    while (Instant.now().isBefore(deadline)) {
      List<VfioVm> current = list(client);
      String table = table(current);
      if (!table.equals(last)) {
        System.out.println(table);
        last = table;
      }
      reached = current.size() == expect.size() && current.stream().allMatch(vm -> vm.getStatus() != null
          && expect.get(vm.getMetadata().getNamespace() + "/" + vm.getMetadata().getName()) == vm.getStatus().getPhase());
      if (reached) {
        break;
      }
      pause();
    }
    if (!reached) {
      System.out.println("CHECK FAILED: not every VfioVm reached its expected phase " + expect);
      return 1;
    }
    System.out.println("every VfioVm reached its expected phase; deleting them");
    client.resources(VfioVm.class).inAnyNamespace().delete();
    while (Instant.now().isBefore(deadline)) {
      if (list(client).isEmpty() && client.pods().inNamespace(NODE_POD_NAMESPACE).list().getItems().isEmpty()) {
        System.out.println("all VfioVms and node pods are gone: pins, UIDs and budget released");
        return 0;
      }
      pause();
    }
    System.out.println("CHECK FAILED: VfioVms or node pods still present after deletion");
    return 1;
  }

  private static void pause() {
    try {
      Thread.sleep(500); // polling cadence of a console view, not synchronisation
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private static List<VfioVm> list(KubernetesClient client) {
    List<VfioVm> vms = new ArrayList<>(client.resources(VfioVm.class).inAnyNamespace().list().getItems());
    vms.sort(Comparator.comparing((VfioVm vm) -> vm.getMetadata().getNamespace())
        .thenComparing(vm -> vm.getMetadata().getName()));
    return vms;
  }

  private void watchForever(KubernetesClient client) {
    System.out.println("watching; Ctrl-C stops the node agents (pins released), the operator and the API server");
    String last = "";
    while (!Thread.currentThread().isInterrupted()) {
      String table = table(list(client));
      if (!table.equals(last)) {
        System.out.println(table);
        last = table;
      }
      pause();
    }
  }

  /** kubectl get vvm -A, with the condition message that explains the phase. */
  static String table(List<VfioVm> vms) {
    StringBuilder out = new StringBuilder(String.format("%-10s %-12s %-12s %-12s %-11s %-10s %-10s %s%n",
        "NAMESPACE", "NAME", "PHASE", "NODE", "UID", "MEMLOCK", "PINNED", "MESSAGE"));
    for (VfioVm vm : vms) {
      var s = vm.getStatus();
      out.append(String.format("%-10s %-12s %-12s %-12s %-11s %-10s %-10s %s%n",
          vm.getMetadata().getNamespace(), vm.getMetadata().getName(),
          s == null || s.getPhase() == null ? "" : s.getPhase(), s == null ? "" : orEmpty(s.getNodeName()),
          s == null ? "" : orEmpty(s.getHostUid()), s == null ? "" : orEmpty(s.getMemlockLimitBytes()),
          s == null ? "" : orEmpty(s.getPinnedBytes()), s == null ? "" : orEmpty(s.getMessage())));
    }
    return out.toString();
  }

  private static String orEmpty(Object value) {
    return value == null ? "" : value.toString();
  }
}
