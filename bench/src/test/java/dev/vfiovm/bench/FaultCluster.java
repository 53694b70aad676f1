package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.controller.NodeBudget;
import dev.vfiovm.controller.NodePodShape;
import dev.vfiovm.testing.KubeApiServerFixture;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;

/**
 * What the fault suite (docs/testing.md, "Fault suite") runs on: the fixture's real kube-apiserver 1.20.2 +
 * etcd, fake Nodes with small budgets, the benchmark's {@link StandInKubelet} (pod Running, the agent's reports
 * as the agent writes them, terminated containers then removal on deletion), the operator as a separate JVM
 * ({@code java -jar vfiovm.jar operator}, so {@link OperatorProcess#kill9()} is a real SIGKILL), a watch that
 * records every node pod created, and a sampler that checks the invariants on every listing of the node pods.
 */
final class FaultCluster implements AutoCloseable {
  static final long MIB = 1L << 20;
  static final String GROUP_LABEL = "vfiovm-faults/group";
  static final Duration CONVERGE = Duration.ofMinutes(Integer.getInteger("faults.convergeMinutes", 3));

  final KubernetesClient client;
  final String nodePodNs;
  final String vmNs;
  final Path dir;
  final Path kubeconfig;
  final Map<String, String> selector;
  final List<String> nodes = new ArrayList<>();
  final StandInKubelet kubelet;
  final PodRecorder pods;
  final List<OperatorProcess> operators = new ArrayList<>();

  /** Each fake node's memory: room for every node pod's memory request beside its small memlock budget. */
  static final long NODE_MEMORY = 1L << 40;

  FaultCluster(String name, int nodeCount, String allocatable) throws IOException {
    String jar = System.getenv("VFIOVM_JAR");
    Prerequisites.require(jar != null && Files.isRegularFile(Path.of(jar)),
        "the shaded jar at VFIOVM_JAR (" + jar + "; mvn package builds it)");
    client = client("vfiovm-faults-" + name);
    KubeApiServerFixture.installCrds(client);
    nodePodNs = KubeApiServerFixture.createNamespace(client, "vfiovm-system");
    vmNs = KubeApiServerFixture.createNamespace(client, name);
    dir = Path.of(System.getProperty("faults.out", "target/faults")).resolve(vmNs).toAbsolutePath();
    Files.createDirectories(dir);
    kubeconfig = dir.resolve("kubeconfig");
    Files.writeString(kubeconfig, KubeApiServerFixture.kubeConfigYaml());
    selector = Map.of(GROUP_LABEL, vmNs);
    for (int i = 0; i < nodeCount; i++) {
      String node = vmNs + "-node-" + i;
      // a real node's memory, of which only `allocatable` is the VMs' memlock budget (the rest its host reserve):
      // node pods must also fit beside each other in the node's memory (their requests), as the kubelet checks
      long reserve = NODE_MEMORY - dev.vfiovm.api.Quantities.bytes(allocatable);
      KubeApiServerFixture.createNode(client, node, Long.toString(NODE_MEMORY), selector,
          Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, Long.toString(reserve)));
      nodes.add(node);
    }
    pods = new PodRecorder(client(name + "-recorder"), nodePodNs).start();
    kubelet = new StandInKubelet(client(name + "-kubelet"), nodePodNs, 8).start();
  }

  static KubernetesClient client(String userAgent) {
    Config config = Config.fromKubeconfig(KubeApiServerFixture.kubeConfigYaml());
    config.setRequestTimeout(30_000);
    config.setUserAgent(userAgent);
    return new KubernetesClientBuilder().withConfig(config).build();
  }

  /** The operator's command-line options for this cluster (host reserve 0, memlock overhead 1 MiB). */
  List<String> operatorArgs(long uidStart, int uidRange, boolean leaderElection) {
    return List.of("--node-pod-namespace", nodePodNs, "--node-pod-image", "vfiovm/operator:faults",
        "--memlock-overhead", "1Mi", "--host-reserve", "0", "--uid-range-start", Long.toString(uidStart),
        "--uid-range-size", Integer.toString(uidRange), "--leader-election", Boolean.toString(leaderElection),
        "--log-level", "info");
  }

  OperatorProcess operator(String name, List<String> args) throws IOException {
    OperatorProcess p = new OperatorProcess(name, dir, kubeconfig, args).start();
    operators.add(p);
    return p;
  }

  VfioVm vm(String name, String memory) {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withName(name).withNamespace(vmNs).build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory(memory);
    spec.setNodeSelector(new HashMap<>(selector));
    spec.setDmaBackend(dev.vfiovm.api.DmaBackend.IoUring);
    vm.setSpec(spec);
    return vm;
  }

  List<VfioVm> vms() {
    return client.resources(VfioVm.class).inNamespace(vmNs).list().getItems();
  }

  List<Pod> nodePods() {
    return client.pods().inNamespace(nodePodNs).withLabelSelector(NodePodShape.SELECTOR).list().getItems();
  }

  Map<String, Long> budgets() {
    Map<String, Long> budgets = new TreeMap<>();
    for (Node n : client.nodes().withLabels(selector).list().getItems()) {
      budgets.put(n.getMetadata().getName(), NodeBudget.of(n, 0).budgetBytes());
    }
    return budgets;
  }

  /** The memlock limit a node pod sets (its agent's {@code --memlock} argument), 0 if it names none. */
  static long memlockOf(Pod pod) {
    List<Container> all = new ArrayList<>(pod.getSpec().getContainers());
    all.addAll(pod.getSpec().getInitContainers());
    for (Container c : all) {
      List<String> words = new ArrayList<>();
      if (c.getCommand() != null) {
        words.addAll(c.getCommand());
      }
      if (c.getArgs() != null) {
        words.addAll(c.getArgs());
      }
      for (int i = 0; i + 1 < words.size(); i++) {
        if (words.get(i).equals("--memlock")) {
          return Long.parseLong(words.get(i + 1));
        }
      }
    }
    return 0;
  }

  static String vmKeyOf(Pod pod) {
    Map<String, String> labels = pod.getMetadata().getLabels();
    String annotated = pod.getMetadata().getAnnotations() == null ? null
        : pod.getMetadata().getAnnotations().get(NodePodShape.ANNOTATION_VM);
    return annotated != null ? annotated
        : labels.get(NodePodShape.LABEL_VM_NAMESPACE) + "/" + labels.get(NodePodShape.LABEL_VM_NAME);
  }

  /**
   * The invariants at one moment, from one listing of the node pods (one resourceVersion): no host UID on two
   * node pods, no node whose pods' memlock limits sum over its budget.
   */
  static List<String> violations(List<Pod> pods, Map<String, Long> budgets) {
    List<String> found = new ArrayList<>();
    Map<String, List<String>> byUid = new TreeMap<>();
    Map<String, Long> pinnable = new TreeMap<>();
    for (Pod p : pods) {
      String uid = p.getMetadata().getLabels().get(NodePodShape.LABEL_HOST_UID);
      byUid.computeIfAbsent(uid, u -> new ArrayList<>()).add(p.getMetadata().getName());
      String node = p.getSpec().getNodeName();
      pinnable.merge(node, memlockOf(p), Long::sum);
    }
    byUid.forEach((uid, names) -> {
      if (names.size() > 1) {
        found.add("UID collision: host UID " + uid + " on node pods " + names);
      }
    });
    pinnable.forEach((node, sum) -> {
      Long budget = budgets.get(node);
      if (budget != null && sum > budget) {
        found.add("over budget: node " + node + " carries memlock limits of " + sum + " bytes > budget " + budget);
      }
    });
    return found;
  }

  /** Samples the invariants until closed, on its own client and thread. */
  final class Sampler implements AutoCloseable {
    final AtomicLong samples = new AtomicLong();
    final AtomicInteger maxPods = new AtomicInteger();
    final List<String> violations = Collections.synchronizedList(new ArrayList<>());
    private volatile boolean stop;
    private final Thread thread;

    Sampler() {
      Map<String, Long> budgets = budgets();
      KubernetesClient own = client("faults-sampler");
      thread = new Thread(() -> {
        try (own) {
          while (!stop) {
            try {
              List<Pod> list = own.pods().inNamespace(nodePodNs).withLabelSelector(NodePodShape.SELECTOR).list().getItems();
              samples.incrementAndGet();
              maxPods.accumulateAndGet(list.size(), Math::max);
              for (String v : violations(list, budgets)) {
                if (violations.size() < 50) {
                  violations.add(v);
                }
              }
            } catch (RuntimeException e) {
              // the API server down (restart scenario): the next listing samples again
            }
          }
        }
      }, "faults-sampler");
      thread.setDaemon(true);
      thread.start();
    }

    @Override
    public void close() throws InterruptedException {
      stop = true;
      thread.join(TimeUnit.SECONDS.toMillis(60));
    }
  }

  /**
   * Waits until every VfioVm of the namespace is Running and none is being deleted (no finalizer left behind),
   * and every node pod belongs to a live VM with that VM's host UID and node (no orphan); fails with what is
   * stuck. Returns the final VMs.
   */
  List<VfioVm> awaitConverged(Duration atMost) {
    await("convergence: every VM Running or gone, no orphan node pod").atMost(atMost)
        .pollInterval(Duration.ofMillis(500)).ignoreExceptions().untilAsserted(() -> {
          List<VfioVm> vms = vms();
          List<String> stuck = vms.stream()
              .filter(v -> v.getMetadata().getDeletionTimestamp() != null || v.getStatus() == null
                  || v.getStatus().getPhase() != Phase.Running)
              .map(FaultCluster::describe).toList();
          assertThat(stuck).as("VMs not Running (or stuck deleting)").isEmpty();
          assertThat(orphans(vms, nodePods())).as("orphan node pods").isEmpty();
          assertThat(leakedClaims(vms, uidClaims())).as("UID claims of no live VM").isEmpty();
        });
    return vms();
  }

  /** The operator's UID claims (one Lease per host UID in use, docs/architecture.md). */
  List<io.fabric8.kubernetes.api.model.coordination.v1.Lease> uidClaims() {
    return client.leases().inNamespace(nodePodNs).list().getItems().stream()
        .filter(l -> l.getMetadata().getName().startsWith("vfiovm-uid-")).toList();
  }

  /** UID claims whose VM (by namespace/name and metadata.uid) is gone: a UID and budget held for nobody. */
  static List<String> leakedClaims(List<VfioVm> vms, List<io.fabric8.kubernetes.api.model.coordination.v1.Lease> claims) {
    Set<String> live = vms.stream().map(v -> NodePodShape.vmKey(v) + "@" + v.getMetadata().getUid())
        .collect(Collectors.toSet());
    return claims.stream().filter(l -> {
      Map<String, String> a = l.getMetadata().getAnnotations() == null ? Map.of() : l.getMetadata().getAnnotations();
      return !live.contains(a.get("vfiovm.dev/vm") + "@" + a.get("vfiovm.dev/vm-uid"));
    }).map(l -> l.getMetadata().getName() + " for " + l.getMetadata().getAnnotations()).toList();
  }

  /** Node pods that belong to no live VM, or carry another host UID or node than their VM's status says. */
  static List<String> orphans(List<VfioVm> vms, List<Pod> pods) {
    Map<String, VfioVm> byKey = vms.stream().collect(Collectors.toMap(NodePodShape::vmKey, v -> v, (a, b) -> a));
    List<String> orphans = new ArrayList<>();
    for (Pod p : pods) {
      VfioVm vm = byKey.get(vmKeyOf(p));
      String uid = p.getMetadata().getLabels().get(NodePodShape.LABEL_HOST_UID);
      String vmUid = p.getMetadata().getAnnotations() == null ? null
          : p.getMetadata().getAnnotations().get("vfiovm.dev/vm-uid");
      if (vm == null) {
        orphans.add(p.getMetadata().getName() + ": its VfioVm " + vmKeyOf(p) + " is gone");
      } else if (vm.getStatus() == null || !String.valueOf(vm.getStatus().getHostUid()).equals(uid)
          || !p.getSpec().getNodeName().equals(vm.getStatus().getNodeName())) {
        orphans.add(p.getMetadata().getName() + ": host UID " + uid + " on " + p.getSpec().getNodeName()
            + ", its VfioVm's status says " + (vm.getStatus() == null ? "nothing"
                : vm.getStatus().getHostUid() + " on " + vm.getStatus().getNodeName()));
      } else if (vmUid != null && !vmUid.equals(vm.getMetadata().getUid())) {
        orphans.add(p.getMetadata().getName() + ": made for VfioVm uid " + vmUid + ", the live one is "
            + vm.getMetadata().getUid());
      }
    }
    return orphans;
  }

  static String describe(VfioVm v) {
    return v.getMetadata().getName() + " phase=" + (v.getStatus() == null ? null : v.getStatus().getPhase())
        + (v.getMetadata().getDeletionTimestamp() != null ? " DELETING finalizers=" + v.getMetadata().getFinalizers() : "")
        + " message=" + (v.getStatus() == null ? null : v.getStatus().getMessage());
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** Ends the operators, the stand-in kubelet and the watch; the objects stay (each test class has its own server). */
  @Override
  public void close() {
    for (OperatorProcess p : operators) {
      p.kill9();
    }
    kubelet.close();
    pods.close();
    client.close();
  }

  /**
   * Every node pod created, from a watch started before the run (re-watching when closed; a pod counts once by
   * its uid): pod uids per VM key, so a second pod for one VM is seen however short its life.
   */
  static final class PodRecorder implements AutoCloseable {
    final Map<String, Set<String>> createdByVm = new ConcurrentHashMap<>();
    final Set<String> created = ConcurrentHashMap.newKeySet();
    final Set<String> deleted = ConcurrentHashMap.newKeySet();
    private final KubernetesClient client;
    private final String namespace;
    private volatile Watch watch;
    private volatile boolean closed;

    PodRecorder(KubernetesClient client, String namespace) {
      this.client = client;
      this.namespace = namespace;
    }

    PodRecorder start() {
      watch = client.pods().inNamespace(namespace).withLabelSelector(NodePodShape.SELECTOR).watch(new Watcher<>() {
        @Override
        public void eventReceived(Action action, Pod pod) {
          String uid = pod.getMetadata().getUid();
          if (created.add(uid)) {
            createdByVm.computeIfAbsent(vmKeyOf(pod), k -> ConcurrentHashMap.newKeySet()).add(uid);
          }
          if (action == Action.DELETED) {
            deleted.add(uid);
          }
        }

        @Override
        public void onClose(WatcherException cause) {
          if (cause != null && !closed) {
            start();
          }
        }
      });
      return this;
    }

    /** VM keys with more than one node pod created, and those pods' uids. */
    Map<String, Set<String>> duplicates() {
      Map<String, Set<String>> d = new LinkedHashMap<>();
      createdByVm.forEach((k, v) -> {
        if (v.size() > 1) {
          d.put(k, v);
        }
      });
      return d;
    }

    @Override
    public void close() {
      closed = true;
      if (watch != null) {
        watch.close();
      }
      client.close();
    }
  }
}
