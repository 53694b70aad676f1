package dev.vfiovm.testing;

import dev.vfiovm.api.CrdInstaller;
import io.fabric8.kubeapitest.KubeAPIServer;
import io.fabric8.kubeapitest.KubeAPIServerConfigBuilder;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.NodeStatusBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * One real kube-apiserver (+ etcd) per test JVM, started offline by io.fabric8:kube-api-test from the binaries
 * under the system property {@code kubeapitest.dir} (layout {@code k8s/<version>-linux-amd64/{kube-apiserver,etcd}},
 * built by e2e/scripts/setup.d/20-kube-apiserver.sh). Missing binaries skip the test (fail with CI=true).
 *
 * <pre>
 * KubernetesClient client = KubeApiServerFixture.newClient(); // starts the server on first use
 * KubeApiServerFixture.installCrds(client);                    // the generated CRDs on the test classpath
 * String ns = KubeApiServerFixture.createNamespace(client, "rbac");
 * String out = KubeApiServerFixture.kubectl("auth", "can-i", "list", "pods", "-n", ns);
 * KubeApiServerFixture.createNode(client, "worker-1", "16Gi", Map.of(), Map.of());
 * KubeApiServerFixture.finishPodDeletions(client, ns);          // what the kubelet would do
 * </pre>
 *
 * No controllers, scheduler or kubelet run there: tests create Nodes themselves (status via the status
 * subresource) and delete pods bound to a node with grace period 0, as the kubelet would.
 */
public final class KubeApiServerFixture {
  public static final String DIR_PROPERTY = "kubeapitest.dir";
  /** CRDs generated into target/classes (dev.vfiovm.api.CrdGeneration, process-classes). */
  public static final List<String> CRD_RESOURCES = List.of("META-INF/fabric8/vfiovms.vfiovm.dev-v1.yml");

  private static KubeAPIServer server;
  private static String kubeConfigYaml;
  private static Path auditLog;

  /**
   * Asks the server to write an audit log (every request at level Metadata, JSON lines) to {@code log}; call
   * before the server starts (the benchmark counts the operator's writes from it).
   *
   * @throws IllegalStateException when the server is already running
   */
  public static synchronized void auditLogTo(Path log) {
    if (server != null) {
      throw new IllegalStateException("the kube-apiserver is already running; ask for its audit log before first use");
    }
    auditLog = log.toAbsolutePath();
  }

  private KubeApiServerFixture() {}

  /** The binaries' directory, or null when the property is unset. */
  public static Path binariesDir() {
    String dir = System.getProperty(DIR_PROPERTY);
    return dir == null || dir.isBlank() ? null : Path.of(dir);
  }

  static boolean binariesPresent(Path dir) {
    if (dir == null || !Files.isDirectory(dir.resolve("k8s"))) {
      return false;
    }
    try (Stream<Path> versions = Files.list(dir.resolve("k8s"))) {
      return versions.anyMatch(v -> Files.isExecutable(v.resolve("kube-apiserver")) && Files.isExecutable(v.resolve("etcd")));
    } catch (IOException e) {
      return false;
    }
  }

  /** Kubeconfig of the running server (admin); starts it on first call. */
  public static synchronized String kubeConfigYaml() {
    Path dir = binariesDir();
    Prerequisites.require(binariesPresent(dir), "kube-apiserver and etcd under " + dir + "/k8s/<version>-linux-amd64 "
        + "(system property " + DIR_PROPERTY + "; build them with bash e2e/scripts/setup.sh)");
    if (server == null) {
      KubeAPIServerConfigBuilder config = KubeAPIServerConfigBuilder.anAPIServerConfig()
          .withTestDir(dir.toString())
          .withOfflineMode(true)
          .withUpdateKubeConfig(false)
          .withStartupTimeout(180_000);
      if (auditLog != null) {
        try {
          Files.createDirectories(auditLog.getParent());
          Path policy = auditLog.resolveSibling("audit-policy.yaml");
          Files.writeString(policy, "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
              + "rules:\n- level: Metadata\n");
          config.withApiServerFlag("--audit-policy-file", policy.toString())
              .withApiServerFlag("--audit-log-path", auditLog.toString())
              .withApiServerFlag("--audit-log-format", "json");
        } catch (IOException e) {
          throw new IllegalStateException("cannot write the audit policy beside " + auditLog, e);
        }
      }
      KubeAPIServer started = new KubeAPIServer(config.build());
      started.start();
      Runtime.getRuntime().addShutdownHook(new Thread(started::stop, "kube-apiserver-stop"));
      kubeConfigYaml = started.getKubeConfigYaml();
      server = started;
    }
    return kubeConfigYaml;
  }

  /** A new client for the server (the caller closes it). */
  public static KubernetesClient newClient() {
    Config config = Config.fromKubeconfig(kubeConfigYaml());
    config.setRequestTimeout(30_000);
    return new KubernetesClientBuilder().withConfig(config).build();
  }

  /** Server-side applies the project's generated CRDs and waits until they are established. */
  public static void installCrds(KubernetesClient client) {
    for (String resource : CRD_RESOURCES) {
      try (InputStream in = KubeApiServerFixture.class.getClassLoader().getResourceAsStream(resource)) {
        if (in == null) {
          throw new IllegalStateException(resource + " is not on the test classpath; run mvn process-classes first");
        }
        CustomResourceDefinition crd = Serialization.unmarshal(in, CustomResourceDefinition.class);
        applyAndWait(client, crd);
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }
  }

  private static void applyAndWait(KubernetesClient client, CustomResourceDefinition crd) {
    // server-side apply, or create/update on a server without CEL (the 1.20 test server): CrdInstaller says why
    CrdInstaller.install(client, crd, "kube-api-test-fixture");
  }

  /** Creates a namespace named {@code prefix-<random>} and returns its name. */
  public static String createNamespace(KubernetesClient client, String prefix) {
    String name = prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(name).endMetadata().build()).create();
    return name;
  }

  /**
   * Runs the kubectl that sits beside the kube-apiserver binary against the server; returns its stdout.
   *
   * @throws IllegalStateException with stderr when kubectl exits non-zero
   */
  public static String kubectl(String... args) {
    try {
      Path kubeconfig = Files.createTempFile("kubeapitest", ".kubeconfig");
      Files.writeString(kubeconfig, kubeConfigYaml());
      Path kubectl;
      try (Stream<Path> versions = Files.list(binariesDir().resolve("k8s"))) {
        kubectl = versions.map(v -> v.resolve("kubectl")).filter(Files::isExecutable).sorted().reduce((a, b) -> b)
            .orElse(null);
      }
      Prerequisites.require(kubectl != null, "kubectl under " + binariesDir() + "/k8s/<version>-linux-amd64");
      List<String> command = new java.util.ArrayList<>(List.of(kubectl.toString(), "--kubeconfig", kubeconfig.toString()));
      command.addAll(List.of(args));
      Path out = Files.createTempFile("kubectl", ".out");
      Path err = Files.createTempFile("kubectl", ".err");
      Process p = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
      if (!p.waitFor(120, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IllegalStateException("kubectl " + String.join(" ", args) + " timed out");
      }
      String stdout = Files.readString(out);
      String stderr = Files.readString(err);
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
      Files.deleteIfExists(kubeconfig);
      if (p.exitValue() != 0) {
        throw new IllegalStateException("kubectl " + String.join(" ", args) + " exited " + p.exitValue() + ": " + stderr);
      }
      return stdout;
    } catch (IOException e) {
      throw new IllegalStateException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /**
   * Registers a Node as a kubelet would: the object, then its capacity/allocatable through the status
   * subresource (no kubelet runs here).
   */
  public static Node createNode(KubernetesClient client, String name, String allocatableMemory,
      Map<String, String> labels, Map<String, String> annotations) {
    client.nodes().resource(new NodeBuilder()
        .withNewMetadata().withName(name).withLabels(labels).withAnnotations(annotations).endMetadata()
        .build()).create();
    Node node = client.nodes().withName(name).get();
    Map<String, Quantity> resources = Map.of(
        "memory", new Quantity(allocatableMemory), "cpu", new Quantity("8"), "pods", new Quantity("110"));
    node.setStatus(new NodeStatusBuilder().withCapacity(resources).withAllocatable(resources).build());
    return client.nodes().resource(node).updateStatus();
  }

  /**
   * The kubelet's part in deletion: a pod bound to a node stays Terminating until the kubelet deletes it with
   * grace period 0; this does that for every terminating pod of the namespace.
   */
  public static void finishPodDeletions(KubernetesClient client, String namespace) {
    for (Pod pod : client.pods().inNamespace(namespace).list().getItems()) {
      if (pod.getMetadata().getDeletionTimestamp() != null) {
        // as the kubelet: first report every container terminated, then remove the pod
        try {
          client.pods().inNamespace(namespace).withName(pod.getMetadata().getName()).editStatus(p -> {
            p.setStatus(terminated(p));
            return p;
          });
        } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
          if (e.getCode() != 404 && e.getCode() != 409) {
            throw e;
          }
        }
        client.pods().inNamespace(namespace).withName(pod.getMetadata().getName()).withGracePeriod(0).delete();
      }
    }
  }

  /** The status the kubelet reports once every container of the pod has stopped. */
  public static io.fabric8.kubernetes.api.model.PodStatus terminated(Pod pod) {
    var status = new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Failed");
    for (var c : pod.getSpec().getInitContainers()) {
      status.addNewInitContainerStatus().withName(c.getName()).withImage(c.getImage()).withImageID("")
          .withReady(false).withRestartCount(0).withNewState().withNewTerminated().withExitCode(0)
          .withReason("Completed").endTerminated().endState().endInitContainerStatus();
    }
    for (var c : pod.getSpec().getContainers()) {
      status.addNewContainerStatus().withName(c.getName()).withImage(c.getImage()).withImageID("")
          .withReady(false).withRestartCount(0).withNewState().withNewTerminated().withExitCode(143)
          .withReason("Error").endTerminated().endState().endContainerStatus();
    }
    return status.build();
  }

  /** Applies a resource server-side as the given manager. */
  public static <T extends HasMetadata> T apply(KubernetesClient client, T resource) {
    return client.resource(resource).fieldManager("kube-api-test-fixture").forceConflicts().serverSideApply();
  }
}
