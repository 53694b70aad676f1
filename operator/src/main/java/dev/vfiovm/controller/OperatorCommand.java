package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import dev.vfiovm.cli.LogLevelOption;
import dev.vfiovm.cli.UidRangeOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** `vfiovm operator`: runs the controller against the cluster of KUBECONFIG or the in-cluster config. */
@Command(
    name = "operator",
    mixinStandardHelpOptions = true,
    description = {
      "Run the VfioVm operator against the cluster in KUBECONFIG (or the in-cluster service account).",
      "Every option defaults from the environment variable named in its description."
    })
public final class OperatorCommand implements Callable<Integer> {
  static final class QuantityConverter implements ITypeConverter<Long> {
    @Override
    public Long convert(String value) {
      return Quantities.bytes(value);
    }
  }

  @Mixin UidRangeOptions uidRange;

  @Mixin LogLevelOption logging;

  @Option(names = "--memlock-overhead", defaultValue = "${env:VFIOVM_MEMLOCK_OVERHEAD:-1Gi}",
      converter = QuantityConverter.class,
      description = "Added to factor x memory in each VM's memlock limit (env VFIOVM_MEMLOCK_OVERHEAD; default 1Gi).")
  long memlockOverhead;

  @Option(names = "--host-reserve", defaultValue = "${env:VFIOVM_HOST_RESERVE:-2Gi}",
      converter = QuantityConverter.class,
      description = "Node memory kept out of the VM budget; node annotation vfiovm.dev/host-reserve overrides it "
          + "(env VFIOVM_HOST_RESERVE; default 2Gi).")
  long hostReserve;

  @Option(names = "--node-pod-namespace",
      defaultValue = "${env:VFIOVM_NODE_POD_NAMESPACE:-${env:POD_NAMESPACE:-vfiovm-system}}",
      description = "Namespace of the node pods and of the leader-election lease (env VFIOVM_NODE_POD_NAMESPACE, "
          + "else POD_NAMESPACE, else vfiovm-system).")
  String nodePodNamespace;

  @Option(names = "--node-pod-image", defaultValue = "${env:VFIOVM_NODE_POD_IMAGE:-vfiovm/operator:latest}",
      description = "Image of the node pods: the operator's own (env VFIOVM_NODE_POD_IMAGE; default ${DEFAULT-VALUE}).")
  String nodePodImage;

  @Option(names = "--node-pod-service-account", defaultValue = "${env:VFIOVM_NODE_POD_SERVICE_ACCOUNT:-vfiovm-node}",
      description = "Name prefix of each VM's node-pod ServiceAccount, Role and RoleBinding (one identity per VM, "
          + "allowed get/patch on its own pod only; env VFIOVM_NODE_POD_SERVICE_ACCOUNT; default ${DEFAULT-VALUE}).")
  String nodePodServiceAccount;

  @Option(names = "--node-pod-capabilities", split = ",",
      defaultValue = "${env:VFIOVM_NODE_POD_CAPABILITIES:-SETUID,SETGID,SETPCAP,KILL,SYS_PTRACE,SYS_RESOURCE}",
      description = "Capabilities of the node-agent container, comma-separated, all others dropped "
          + "(env VFIOVM_NODE_POD_CAPABILITIES; default ${DEFAULT-VALUE}). A host whose root lacks one needs a smaller set.")
  List<String> nodePodCapabilities;

  @Option(names = "--http-port", defaultValue = "${env:VFIOVM_HTTP_PORT:-8080}",
      description = "Port of /healthz, /readyz and /metrics (env VFIOVM_HTTP_PORT; default ${DEFAULT-VALUE}).")
  int httpPort;

  @Option(names = "--leader-election", arity = "1", defaultValue = "${env:VFIOVM_LEADER_ELECTION:-auto}",
      description = "true, false or auto = true when running in a cluster (env VFIOVM_LEADER_ELECTION; default auto).")
  String leaderElection;

  @Option(names = "--reconcile-retries", defaultValue = "${env:VFIOVM_RECONCILE_RETRIES:-10}",
      description = "How often a failed reconcile of one VM is retried in a row, the interval doubling from "
          + "--reconcile-retry-interval up to a minute (env VFIOVM_RECONCILE_RETRIES; default ${DEFAULT-VALUE}).")
  int reconcileRetries;

  @Option(names = "--reconcile-retry-interval", defaultValue = "${env:VFIOVM_RECONCILE_RETRY_INTERVAL_MS:-2000}",
      description = "First retry interval of a failed reconcile in milliseconds "
          + "(env VFIOVM_RECONCILE_RETRY_INTERVAL_MS; default ${DEFAULT-VALUE}).")
  long reconcileRetryIntervalMillis;

  @Option(names = "--max-reconcile-interval", defaultValue = "${env:VFIOVM_MAX_RECONCILE_INTERVAL_S:-300}",
      description = "Every VM is reconciled at least this often, in seconds: the safety net under the event-driven "
          + "wake-ups (env VFIOVM_MAX_RECONCILE_INTERVAL_S; default ${DEFAULT-VALUE}).")
  long maxReconcileIntervalSeconds;

  OperatorSettings settings() {
    return new OperatorSettings(uidRange.start(), uidRange.size(), memlockOverhead, hostReserve, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, nodePodCapabilities).withPodMemory(vmmOverhead, agentMemory)
        .withReconcileTiming(reconcileRetries, reconcileRetryIntervalMillis, maxReconcileIntervalSeconds);
  }

  boolean leaderElectionEnabled() {
    return switch (leaderElection.toLowerCase()) {
      case "true" -> true;
      case "false" -> false;
      case "auto" -> System.getenv("KUBERNETES_SERVICE_HOST") != null;
      default -> throw new IllegalArgumentException(
          "--leader-election / VFIOVM_LEADER_ELECTION must be true, false or auto, not '" + leaderElection + "'");
    };
  }

  @Override
  public Integer call() throws Exception {
    logging.apply();
    OperatorSettings settings = settings();
    boolean leader = leaderElectionEnabled();
    KubernetesClient client = new KubernetesClientBuilder().build();
    CountDownLatch stopped = new CountDownLatch(1);
    VfioVmOperator operator;
    try {
      operator = VfioVmOperator.start(client, settings, httpPort, leader ? nodePodNamespace : null);
    } catch (RuntimeException | IOException e) {
      // one line that says what is wrong (no CRD, no access, port taken), not a stack trace
      System.err.println("vfiovm operator: cannot start against " + client.getMasterUrl() + ": " + e.getMessage()
          + (e.getCause() != null ? " (" + e.getCause().getMessage() + ")" : "")
          + "; is the VfioVm CRD installed (kubectl apply -f crds/) and may this account watch it?");
      client.close();
      return 1;
    }
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      operator.close();
      client.close();
      stopped.countDown();
    }, "vfiovm-shutdown"));
    stopped.await();
    return 0;
  }

  // --- node pod memory (issue 12; NodePodShape.podMemoryBytes) ---

  @Option(names = "--vmm-overhead", defaultValue = "${env:VFIOVM_VMM_OVERHEAD:-256Mi}",
      converter = QuantityConverter.class,
      description = "The VMM's (QEMU's) own memory beyond guest RAM, in each node pod's memory request = limit: "
          + "raise it for large initrds, many vCPUs or devices (env VFIOVM_VMM_OVERHEAD; default 256Mi).")
  long vmmOverhead;

  @Option(names = "--agent-memory", defaultValue = "${env:VFIOVM_AGENT_MEMORY:-320Mi}",
      converter = QuantityConverter.class,
      description = "The node agent's JVM in each node pod's memory request = limit (its heap is bounded by "
          + "-Xmx128m; env VFIOVM_AGENT_MEMORY; default 320Mi, at least 192Mi).")
  long agentMemory;
}
