package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
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

  @Option(names = "--uid-range-start", defaultValue = "${env:VFIOVM_UID_RANGE_START:-1879048192}",
      description = "First host UID given to VMs (env VFIOVM_UID_RANGE_START; default ${DEFAULT-VALUE} = 0x70000000).")
  long uidRangeStart;

  @Option(names = "--uid-range-size", defaultValue = "${env:VFIOVM_UID_RANGE_SIZE:-65536}",
      description = "Number of host UIDs in the range (env VFIOVM_UID_RANGE_SIZE; default ${DEFAULT-VALUE}).")
  long uidRangeSize;

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

  @Option(names = "--log-level", defaultValue = "${env:VFIOVM_LOG_LEVEL:-info}",
      description = "trace, debug, info, warn or error (env VFIOVM_LOG_LEVEL; default ${DEFAULT-VALUE}).")
  String logLevel;

  OperatorSettings settings() {
    return new OperatorSettings(uidRangeStart, uidRangeSize, memlockOverhead, hostReserve, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, nodePodCapabilities);
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
    // slf4j-simple reads its level once, when the first logger is made: set it before anything logs
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", logLevel.toLowerCase());
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
}
