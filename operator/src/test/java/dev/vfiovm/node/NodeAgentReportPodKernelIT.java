package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.testing.ApiServer;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * --report-pod against a real kube-apiserver: the agent (real CLI, real kernel) merge-patches its report
 * into its pod's annotation, exactly what the operator reads; a pod it cannot patch only costs a log line.
 */
class NodeAgentReportPodKernelIT {
  @RegisterExtension static final ApiServer api = ApiServer.withoutCrd().withNamespace("vfiovm-system");
  static KubernetesClient client;
  static String kubeconfigYaml;

  @TempDir Path dir;

  @BeforeAll
  static void prerequisites() {
    String jar = System.getenv("VFIOVM_JAR");
    Prerequisites.require(jar != null && Files.isRegularFile(Path.of(jar)), "the shaded jar (mvn package) at VFIOVM_JAR");
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (run the kernel tier as root)");
    kubeconfigYaml = api.kubeConfigYaml();
    client = api.client();
  }

  Process agent(Path kubeconfig, String pod, Path report, Path out) throws Exception {
    ProcessBuilder pb =
        new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", System.getenv("VFIOVM_JAR"),
                "node-agent", "--vm", "team-a/vm1", "--host-uid", Long.toString(NodeAgentKernelIT.uid()),
                "--memory", "3Mi", "--memlock", "4Mi", "--dma-backend", "io-uring", "--report", report.toString(),
                "--report-pod", pod, "--exit-after-map")
            .redirectOutput(out.toFile())
            .redirectError(ProcessBuilder.Redirect.INHERIT);
    pb.environment().put("KUBECONFIG", kubeconfig.toString());
    return pb.start();
  }

  @Test
  void reportLandsInThePodAnnotationAndAMissingPodIsNotFatal() throws Exception {
    client.pods().inNamespace("vfiovm-system").resource(
        new PodBuilder().withNewMetadata().withName("vm1-node").endMetadata()
            .withNewSpec().addNewContainer().withName("agent").withImage("vfiovm:test").endContainer().endSpec()
            .build()).create();
    Path kubeconfig = dir.resolve("kubeconfig");
    Files.writeString(kubeconfig, kubeconfigYaml);

    Process p = agent(kubeconfig, "vfiovm-system/vm1-node", dir.resolve("r.json"), dir.resolve("out"));
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).isZero();
    Pod pod = client.pods().inNamespace("vfiovm-system").withName("vm1-node").get();
    String annotation = pod.getMetadata().getAnnotations().get(NodeAgentReport.POD_ANNOTATION);
    NodeAgentReport last = ReportPublisher.fromJson(annotation);
    assertThat(last.getPhase()).isEqualTo(AgentPhase.Stopped);
    assertThat(last.getVm()).isEqualTo("team-a/vm1");
    assertThat(last.getVmPid()).isPositive();
    assertThat(ReportPublisher.fromJson(Files.readString(dir.resolve("r.json"))).getVmPid()).isEqualTo(last.getVmPid());

    Process missing = agent(kubeconfig, "vfiovm-system/nobody", dir.resolve("r2.json"), dir.resolve("out2"));
    assertThat(missing.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(missing.exitValue()).isZero();
    List<String> log = Files.readAllLines(dir.resolve("out2"));
    assertThat(log).anyMatch(l -> l.contains("could not write report annotation") && l.contains("vfiovm-system/nobody"));
    assertThat(ReportPublisher.fromJson(Files.readString(dir.resolve("r2.json"))).getPhase()).isEqualTo(AgentPhase.Stopped);
  }
}
