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
 * kubelet does. Only what vfiovm's node pods use is supported: one container, env values (JAVA_TOOL_OPTIONS
 * included) and downward-API fields, the termination message file, emptyDir volumes (a directory per pod) and
 * the containerDisk init containers. Nothing runs in a container: node pods are privileged on a real node
 * anyway, and here they run as this (root) user on the host kernel.
 *
 * <p>Images: there is no container runtime, so an image is a local directory standing for its root filesystem,
 * given as {@code REF=DIR} ({@code vfiovm standalone --image-dir}). The init containers of a containerDisk
 * boot are carried out as what they do: the node image's copy of its static busybox is not needed, and each
 * {@code vfiovm-busybox cp -L SRC DST} from the boot image copies DIR/SRC (symlinks resolved inside DIR) to the
 * pod's directory standing for the emptyDir. The agent's arguments naming a path in an emptyDir mount
 * ({@code /vm/boot/kernel}) are rewritten to that directory. An image with no directory fails the pod with
 * reason ErrImagePull, as a kubelet whose pull failed would report it; a missing file fails the init container
 * with exit code 1 and busybox's message.
 */
public final class LocalPodRunner implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(LocalPodRunner.class);

  private final KubernetesClient client;
  private final String nodeName;
  private final List<String> javaCommand;
  private final Path workDir;
  private final Map<String, String> extraEnv;
  private final Map<String, Path> imageDirs;
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
    this(client, nodeName, javaCommand, workDir, extraEnv, Map.of());
  }

  /** @param imageDirs image reference -> local directory standing for that image's root filesystem */
  public LocalPodRunner(KubernetesClient client, String nodeName, List<String> javaCommand, Path workDir,
      Map<String, String> extraEnv, Map<String, Path> imageDirs) {
    this.client = client;
    this.nodeName = nodeName;
    this.javaCommand = List.copyOf(javaCommand);
    this.workDir = workDir;
    this.extraEnv = Map.copyOf(extraEnv);
    this.imageDirs = Map.copyOf(imageDirs);
  }

  /** Why a pod could not start: the pod's reason and message, and the init container's exit if one failed. */
  static final class PodFailure extends Exception {
    final String reason;
    final String container;
    final Integer exitCode;

    PodFailure(String reason, String container, Integer exitCode, String message) {
      super(message);
      this.reason = reason;
      this.container = container;
      this.exitCode = exitCode;
    }
  }

  /** Parses {@code REF=DIR} (the image reference may hold ':' and '@', never '='). */
  public static Map.Entry<String, Path> imageDir(String option) {
    int eq = option.lastIndexOf('=');
    if (eq <= 0 || eq == option.length() - 1) {
      throw new IllegalArgumentException("--image-dir wants REF=DIR (e.g. vfiovm/guest-demo:0.1.0=/srv/guest-demo), "
          + "not '" + option + "'");
    }
    return Map.entry(option.substring(0, eq), Path.of(option.substring(eq + 1)));
  }

  /**
   * Each emptyDir volume of the pod as a directory of podDir, and what the init containers do to them. Returns
   * the main container's mount paths of those volumes, mapped to their directories.
   */
  static Map<String, Path> prepare(Pod pod, Map<String, Path> imageDirs, Path podDir) throws PodFailure, IOException {
    Map<String, Path> volumes = new LinkedHashMap<>();
    for (var volume : pod.getSpec().getVolumes()) {
      if (volume.getEmptyDir() != null) {
        Path dir = podDir.resolve("volumes").resolve(volume.getName());
        Files.createDirectories(dir);
        volumes.put(volume.getName(), dir);
      }
    }
    Container main = pod.getSpec().getContainers().get(0);
    for (Container init : pod.getSpec().getInitContainers()) {
      runInit(init, main.getImage(), mounts(init, volumes), imageDirs);
    }
    return mounts(main, volumes);
  }

  private static Map<String, Path> mounts(Container container, Map<String, Path> volumes) {
    Map<String, Path> mounts = new LinkedHashMap<>();
    for (var mount : container.getVolumeMounts()) {
      if (volumes.containsKey(mount.getName())) {
        mounts.put(mount.getMountPath(), volumes.get(mount.getName()));
      }
    }
    return mounts;
  }

  /** An init container of a node pod, carried out here: the static busybox's cp, nothing else. */
  private static void runInit(Container init, String nodeImage, Map<String, Path> mounts, Map<String, Path> imageDirs)
      throws PodFailure, IOException {
    List<String> command = new ArrayList<>(init.getCommand());
    command.addAll(init.getArgs());
    boolean busybox = !command.isEmpty() && command.get(0).endsWith("/vfiovm-busybox");
    if (!busybox || command.size() < 4 || !"cp".equals(command.get(1))) {
      throw new PodFailure("UnsupportedInitContainer", init.getName(), null, "init container " + init.getName()
          + " runs " + command + "; the standalone node runs only vfiovm-busybox cp");
    }
    if (init.getImage().equals(nodeImage)) {
      return; // the node image installing its copy tool: this runner copies by itself
    }
    Path root = imageDirs.get(init.getImage());
    if (root == null || !Files.isDirectory(root)) {
      throw new PodFailure("ErrImagePull", init.getName(), null, "init container " + init.getName() + ": image "
          + init.getImage() + " is not available on this standalone node"
          + (root == null ? "" : " (" + root + " is not a directory)")
          + "; give its files with --image-dir " + init.getImage() + "=DIR");
    }
    List<String> operands = command.subList(2, command.size()).stream().filter(a -> !"-L".equals(a)).toList();
    Path destination = local(operands.get(operands.size() - 1), mounts);
    if (destination == null) {
      throw new PodFailure("UnsupportedInitContainer", init.getName(), null, "init container " + init.getName()
          + " copies to " + operands.get(operands.size() - 1) + ", which is in none of its emptyDir volumes");
    }
    for (String source : operands.subList(0, operands.size() - 1)) {
      Path file = inImage(root, source);
      if (file == null || !Files.isRegularFile(file)) {
        throw new PodFailure("Error", init.getName(), 1, "cp: can't stat '" + source + "': No such file or directory");
      }
      Path target = Files.isDirectory(destination) ? destination.resolve(file.getFileName().toString()) : destination;
      Files.copy(file, target, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }
  }

  /** path (absolute, in the image) resolved inside root, symlinks followed as the image's own root would. */
  static Path inImage(Path root, String path) throws IOException {
    Path current = root;
    java.util.Deque<String> todo = new java.util.ArrayDeque<>(List.of(path.split("/")));
    int links = 0;
    while (!todo.isEmpty()) {
      String part = todo.removeFirst();
      if (part.isEmpty() || part.equals(".")) {
        continue;
      }
      if (part.equals("..")) {
        current = current.equals(root) ? root : current.getParent();
        continue;
      }
      Path next = current.resolve(part);
      if (Files.isSymbolicLink(next)) {
        if (++links > 40) {
          return null; // ELOOP
        }
        String target = Files.readSymbolicLink(next).toString();
        List<String> rest = new ArrayList<>(List.of(target.split("/")));
        rest.addAll(todo);
        todo = new java.util.ArrayDeque<>(rest);
        if (target.startsWith("/")) {
          current = root;
        }
        continue;
      }
      if (!Files.exists(next)) {
        return null;
      }
      current = next;
    }
    return current;
  }

  /** A container path in one of the mounts, as the local path; null when in none. */
  static Path local(String path, Map<String, Path> mounts) {
    for (Map.Entry<String, Path> mount : mounts.entrySet()) {
      String prefix = mount.getKey().endsWith("/") ? mount.getKey() : mount.getKey() + "/";
      if (path.equals(mount.getKey())) {
        return mount.getValue();
      }
      if (path.startsWith(prefix)) {
        return mount.getValue().resolve(path.substring(prefix.length()));
      }
    }
    return null;
  }

  /** The container's args as this process runs them: $(VAR) expanded, its own paths made local. */
  static List<String> localArgs(List<String> args, Map<String, String> env, String terminationPath,
      Path localTermination, Map<String, Path> mounts) {
    List<String> out = new ArrayList<>();
    for (String arg : args) {
      String expanded = expand(arg, env);
      Path local = expanded.startsWith("/") ? local(expanded, mounts) : null;
      out.add(expanded.equals(terminationPath) ? localTermination.toString()
          : local != null ? local.toString() : expanded);
    }
    return out;
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
      Map<String, Path> mounts;
      try {
        mounts = prepare(pod, imageDirs, podDir);
      } catch (PodFailure failure) {
        LOG.error("pod {} failed before its container ran: {}", key, failure.getMessage());
        setFailed(pod, failure);
        return;
      }
      Map<String, String> env = containerEnv(pod, container);
      Path localTermination = podDir.resolve("termination-log");
      List<String> command = new ArrayList<>(javaCommand);
      command.addAll(localArgs(container.getArgs(), env, container.getTerminationMessagePath(), localTermination,
          mounts));
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

  /** The pod failed before its container ran: an image not available, an init container that failed. */
  private void setFailed(Pod pod, PodFailure failure) {
    String now = Instant.now().toString();
    Container container = pod.getSpec().getContainers().get(0);
    List<io.fabric8.kubernetes.api.model.ContainerStatus> inits = new ArrayList<>();
    for (Container init : pod.getSpec().getInitContainers()) {
      var state = new ContainerStateBuilder();
      if (init.getName().equals(failure.container) && failure.exitCode != null) {
        state.withNewTerminated().withExitCode(failure.exitCode).withReason("Error")
            .withMessage(failure.getMessage()).withFinishedAt(now).endTerminated();
      } else if (init.getName().equals(failure.container)) {
        state.withNewWaiting().withReason(failure.reason).withMessage(failure.getMessage()).endWaiting();
      } else {
        state.withNewWaiting().withReason("PodInitializing").endWaiting();
      }
      inits.add(new ContainerStatusBuilder().withName(init.getName()).withImage(init.getImage()).withImageID("")
          .withReady(false).withRestartCount(0).withState(state.build()).build());
    }
    boolean pullFailed = failure.exitCode == null;
    try {
      client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
          .editStatus(p -> {
            p.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder()
                .withPhase("Failed").withHostIP("127.0.0.1").withStartTime(now)
                .withReason(pullFailed ? failure.reason : null)
                .withMessage(pullFailed ? failure.getMessage() : null)
                .withConditions(new PodConditionBuilder().withType("Ready").withStatus("False")
                    .withLastTransitionTime(now).build())
                .withInitContainerStatuses(inits)
                .withContainerStatuses(new ContainerStatusBuilder().withName(container.getName())
                    .withImage(container.getImage()).withImageID("").withReady(false).withRestartCount(0)
                    .withState(new ContainerStateBuilder().withNewWaiting().withReason("PodInitializing")
                        .endWaiting().build())
                    .build())
                .build());
            return p;
          });
    } catch (KubernetesClientException e) {
      LOG.debug("pod {} gone before its failure could be reported: {}", key(pod), e.getMessage());
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
