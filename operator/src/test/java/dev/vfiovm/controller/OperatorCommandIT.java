package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.ApiServer;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/** `java -jar vfiovm.jar operator` as its own process, configured only by the documented env vars. */
class OperatorCommandIT {
  @RegisterExtension static final ApiServer api = ApiServer.withCrd();

  static final long GI = 1L << 30;

  @Test
  void theSubcommandRunsTheOperatorFromEnvironmentSettings(@TempDir Path work) throws Exception {
    Path jar = Path.of(System.getenv().getOrDefault("VFIOVM_JAR", "target/vfiovm.jar"));
    Prerequisites.require(Files.isRegularFile(jar), "the shaded jar " + jar + " (mvn package)");
    try (KubernetesClient client = api.newClient()) {
      String nodePodNamespace = api.nodePodNamespace();
      String ns = api.namespace();
      Path kubeconfig = work.resolve("kubeconfig");
      Files.writeString(kubeconfig, api.kubeConfigYaml());
      int port;
      try (ServerSocket socket = new ServerSocket(0)) {
        port = socket.getLocalPort();
      }
      ProcessBuilder builder = new ProcessBuilder(List.of(
          Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(), "operator"))
          .redirectErrorStream(true).redirectOutput(work.resolve("operator.log").toFile());
      Map<String, String> env = builder.environment();
      env.put("KUBECONFIG", kubeconfig.toString());
      env.put("VFIOVM_NODE_POD_NAMESPACE", nodePodNamespace);
      env.put("VFIOVM_NODE_POD_IMAGE", "registry.example/vfiovm:1.2.3");
      env.put("VFIOVM_UID_RANGE_START", "2000000000");
      env.put("VFIOVM_UID_RANGE_SIZE", "100");
      env.put("VFIOVM_MEMLOCK_OVERHEAD", "512Mi");
      env.put("VFIOVM_HOST_RESERVE", "1Gi");
      env.put("VFIOVM_HTTP_PORT", Integer.toString(port));
      env.put("VFIOVM_LEADER_ELECTION", "false");
      env.put("VFIOVM_LOG_LEVEL", "debug");
      ClusterTestSupport cluster = new ClusterTestSupport(client, nodePodNamespace);
      Map<String, String> selector = api.selector();
      String node = api.group() + "-a";
      cluster.node(node, "3Gi", selector, Map.of()); // budget 2Gi
      Process operator = builder.start();
      try {
        HttpClient http = HttpClient.newHttpClient();
        await().atMost(TIMEOUT).ignoreExceptions().until(() -> http.send(
            HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/readyz")).build(),
            HttpResponse.BodyHandlers.ofString()).statusCode() == 200);
        cluster.create(vm(ns, "cli", "1Gi", selector));
        VfioVm placed = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "cli"),
            v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed);
        assertThat(placed.getStatus().getHostUid()).isEqualTo(2000000000L);
        assertThat(placed.getStatus().getMemlockLimitBytes()).isEqualTo(GI + GI / 2);
        assertThat(placed.getStatus().getNodeName()).isEqualTo(node);
        Pod pod = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "cli"), p -> p != null);
        assertThat(pod.getSpec().getContainers().get(0).getImage()).isEqualTo("registry.example/vfiovm:1.2.3");
        assertThat(Files.readString(work.resolve("operator.log"))).contains("DEBUG");
        cluster.deleteAllVms(ns);
      } finally {
        operator.destroy(); // SIGTERM: the shutdown hook stops the operator
        assertThat(operator.waitFor(60, TimeUnit.SECONDS)).as("operator exits on SIGTERM").isTrue();
        client.nodes().withName(node).delete();
      }
      assertThat(operator.exitValue()).as(Files.readString(work.resolve("operator.log"))).isIn(0, 143);
    }
  }
}
