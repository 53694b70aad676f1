package dev.vfiovm.local;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerStateBuilder;
import io.fabric8.kubernetes.api.model.ContainerStatusBuilder;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodConditionBuilder;
import io.fabric8.kubernetes.api.model.PodStatus;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The kubelet's part for the standalone mode, where there is an API server but no kubelet: every pod bound
 * to this node runs as a local process of this jar (the image's entry point is this jar, so a node pod's
 * {@code args} are this program's arguments). It reports the process as the pod's status and, when the pod
 * is deleted, stops the process (SIGTERM, then SIGKILL after the grace period) before removing the pod, as a
 * kubelet does. Only what vfiovm's node pods use is supported: one container, env values and downward-API
 * fields, the termination message file. Nothing runs in a container: node pods are privileged on a real node
 * anyway, and here they run as this (root) user on the host kernel.
 */
public final class LocalPodRunner implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(LocalPodRunner.class);

  private final KubernetesClient client;
  private final String nodeName;
  private final List<String> javaCommand;
  private final Path workDir;
  private final Map<String, String> extraEnv;
  private final Map<String, Process> running = new ConcurrentHashMap<>();
  private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "local-pod");
    t.setDaemon(true);
    return t;
  });
  private SharedIndexInformer<Pod> informer;

  /**
   * @param javaCommand how to start this program (java, its class path, the main class)
   * @param extraEnv environment every pod process gets on top of its own (e.g. KUBECONFIG)
   */
  public LocalPodRunner(KubernetesClient client, String nodeName, List<String> javaCommand, Path workDir,
      Map<String, String> extraEnv) {
    this.client = client;
    this.nodeName = nodeName;
    this.javaCommand = List.copyOf(javaCommand);
    this.workDir = workDir;
    this.extraEnv = Map.copyOf(extraEnv);
  }

  public void start() {
    informer = client.pods().inAnyNamespace().withField("spec.nodeName", nodeName)
        .inform(new ResourceEventHandler<>() {
          @Override
          public void onAdd(Pod pod) {
            executor.execute(() -> sync(pod));
          }

          @Override
          public void onUpdate(Pod oldPod, Pod pod) {
            executor.execute(() -> sync(pod));
          }

          @Override
          public void onDelete(Pod pod, boolean deletedFinalStateUnknown) {
            executor.execute(() -> stop(key(pod), 0));
          }
        });
  }

  private static String key(Pod pod) {
    return pod.getMetadata().getNamespace() + "/" + pod.getMetadata().getName();
  }

  private synchronized void sync(Pod pod) {
    String key = key(pod);
    if (pod.getMetadata().getDeletionTimestamp() != null) {
      Long grace = pod.getMetadata().getDeletionGracePeriodSeconds();
      stop(key, grace == null ? 30 : grace);
      deleteNow(pod);
      return;
    }
    PodStatus status = pod.getStatus();
    boolean started = status != null && status.getPhase() != null && !"Pending".equals(status.getPhase());
    if (!running.containsKey(key) && !started) {
      launch(pod);
    }
  }

  private void launch(Pod pod) {
    String key = key(pod);
    Container container = pod.getSpec().getContainers().get(0);
    Path podDir = workDir.resolve(pod.getMetadata().getNamespace() + "_" + pod.getMetadata().getName());
    try {
      Files.createDirectories(podDir);
      Map<String, String> env = containerEnv(pod, container);
      String terminationPath = container.getTerminationMessagePath();
      Path localTermination = podDir.resolve("termination-log");
      List<String> command = new ArrayList<>(javaCommand);
      for (String arg : container.getArgs()) {
        String expanded = expand(arg, env);
        // the container's own paths (report file = termination message) live in the pod's directory here
        command.add(expanded.equals(terminationPath) ? localTermination.toString() : expanded);
      }
      ProcessBuilder builder = new ProcessBuilder(command)
          .redirectErrorStream(true)
          .redirectOutput(podDir.resolve("log").toFile());
      builder.environment().putAll(env);
      builder.environment().putAll(extraEnv);
      Process process = builder.start();
      running.put(key, process);
      LOG.info("pod {} started as pid {} (log {})", key, process.pid(), podDir.resolve("log"));
      setRunning(pod);
      process.onExit().thenAcceptAsync(p -> exited(pod, p, localTermination), executor);
    } catch (IOException | KubernetesClientException e) {
      LOG.error("pod {} could not start: {}", key, e.getMessage());
    }
  }

  /** Env of the container: plain values and the downward-API fields node pods use. */
  static Map<String, String> containerEnv(Pod pod, Container container) {
    Map<String, String> env = new LinkedHashMap<>();
    for (EnvVar var : container.getEnv()) {
      if (var.getValue() != null) {
        env.put(var.getName(), expand(var.getValue(), env));
      } else if (var.getValueFrom() != null && var.getValueFrom().getFieldRef() != null) {
        String field = var.getValueFrom().getFieldRef().getFieldPath();
        String value = switch (field) {
          case "metadata.name" -> pod.getMetadata().getName();
          case "metadata.namespace" -> pod.getMetadata().getNamespace();
          case "metadata.uid" -> pod.getMetadata().getUid();
          case "spec.nodeName" -> pod.getSpec().getNodeName();
          case "spec.serviceAccountName" -> pod.getSpec().getServiceAccountName();
          default -> null;
        };
        if (value != null) {
          env.put(var.getName(), value);
        }
      }
    }
    return env;
  }

  /** Kubernetes' $(VAR) expansion in args; $$ escapes, unknown references stay as written. */
  static String expand(String text, Map<String, String> env) {
    StringBuilder out = new StringBuilder();
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c == '$' && i + 1 < text.length() && text.charAt(i + 1) == '$') {
        out.append('$');
        i++;
      } else if (c == '$' && i + 1 < text.length() && text.charAt(i + 1) == '(') {
        int end = text.indexOf(')', i + 2);
        String name = end < 0 ? null : text.substring(i + 2, end);
        if (name != null && env.containsKey(name)) {
          out.append(env.get(name));
          i = end;
        } else {
          out.append(c);
        }
      } else {
        out.append(c);
      }
    }
    return out.toString();
  }

  private void setRunning(Pod pod) {
    String now = Instant.now().toString();
    Container container = pod.getSpec().getContainers().get(0);
    client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
        .editStatus(p -> {
          p.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder()
              .withPhase("Running").withHostIP("127.0.0.1").withPodIP("127.0.0.1").withStartTime(now)
              .withConditions(new PodConditionBuilder().withType("Ready").withStatus("True")
                  .withLastTransitionTime(now).build())
              .withContainerStatuses(new ContainerStatusBuilder().withName(container.getName())
                  .withImage(container.getImage()).withImageID("").withReady(true).withRestartCount(0)
                  .withStarted(true)
                  .withState(new ContainerStateBuilder().withNewRunning().withStartedAt(now).endRunning().build())
                  .build())
              .build());
          return p;
        });
  }

  private void exited(Pod pod, Process process, Path terminationFile) {
    String key = key(pod);
    if (running.remove(key) == null) {
      return; // stopped on purpose: the pod is being deleted
    }
    int code = process.exitValue();
    String message = readQuietly(terminationFile);
    LOG.info("pod {} exited with {}", key, code);
    String now = Instant.now().toString();
    Container container = pod.getSpec().getContainers().get(0);
    try {
      client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
          .editStatus(p -> {
            p.getStatus().setPhase(code == 0 ? "Succeeded" : "Failed");
            p.getStatus().setConditions(List.of(new PodConditionBuilder().withType("Ready")
                .withStatus("False").withLastTransitionTime(now).build()));
            p.getStatus().setContainerStatuses(List.of(new ContainerStatusBuilder()
                .withName(container.getName()).withImage(container.getImage()).withImageID("")
                .withReady(false).withRestartCount(0).withStarted(false)
                .withState(new ContainerStateBuilder().withNewTerminated().withExitCode(code)
                    .withReason(code == 0 ? "Completed" : "Error").withMessage(message)
                    .withFinishedAt(now).endTerminated().build())
                .build()));
            return p;
          });
    } catch (KubernetesClientException e) {
      LOG.debug("pod {} gone before its exit could be reported: {}", key, e.getMessage());
    }
  }

  private static String readQuietly(Path file) {
    try {
      String text = Files.readString(file, StandardCharsets.UTF_8);
      return text.length() > 4096 ? text.substring(0, 4096) : text; // the kubelet's cap
    } catch (IOException e) {
      return null;
    }
  }

  private void stop(String key, long graceSeconds) {
    Process process = running.remove(key);
    if (process == null) {
      return;
    }
    process.destroy(); // SIGTERM
    try {
      if (!process.waitFor(Math.max(graceSeconds, 1), TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    LOG.info("pod {} stopped", key);
  }

  private void deleteNow(Pod pod) {
    try {
      client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
          .withGracePeriod(0).delete();
    } catch (KubernetesClientException e) {
      LOG.debug("pod {} already gone: {}", key(pod), e.getMessage());
    }
  }

  /** Stops every pod process (SIGTERM, so node agents release their pins). */
  @Override
  public void close() {
    if (informer != null) {
      informer.close();
    }
    for (String key : List.copyOf(running.keySet())) {
      stop(key, 30);
    }
    executor.shutdownNow();
  }
}
