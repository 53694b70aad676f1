package dev.vfiovm.e2e.cluster;

import io.fabric8.kubernetes.api.model.Quantity;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * What the cluster suite runs against and with which chart values, from system properties (set by the e2e
 * Maven profile, overridable with -D) and the environment (KUBECONFIG).
 *
 * @param kubeconfig the first file KUBECONFIG names, else ~/.kube/config
 * @param node the node of the seed scenario; empty: the first Ready schedulable node
 * @param vmMemory guest memory of every test VM: tiny, because the node's memlock hard limit may be small
 *     (8 MiB on our CI machines) and every VM's limit is vmMemory + memlockOverhead
 */
public record E2ESettings(
    Path kubeconfig,
    String release,
    String releaseNamespace,
    String operatorNamespace,
    String imageRepository,
    String imageTag,
    String imagePullPolicy,
    String vmMemory,
    String memlockOverhead,
    Optional<String> node,
    Duration timeout,
    Map<String, String> extraHelmValues,
    Optional<Path> devicePluginDir) {

  /** The tiny demo guest's containerDisk (e2e/guest, imported by the local node and kind scripts). */
  public String guestImage() {
    return nonBlank(System.getProperty("e2e.guest.image"), "docker.io/vfiovm/guest-tiny:" + imageTag);
  }

  public static E2ESettings current() {
    Map<String, String> properties = new LinkedHashMap<>();
    System.getProperties().forEach((k, v) -> properties.put(k.toString(), v.toString()));
    return from(properties, System.getenv());
  }

  public static E2ESettings from(Map<String, String> properties, Map<String, String> env) {
    return new E2ESettings(
        kubeconfig(env),
        nonBlank(properties.get("e2e.release"), "vfiovm"),
        nonBlank(properties.get("e2e.release.namespace"), "default"),
        nonBlank(properties.get("e2e.namespace"), "vfiovm-system"),
        nonBlank(properties.get("e2e.image.repository"), "vfiovm/operator"),
        nonBlank(properties.get("e2e.image.tag"), "0.1.0-SNAPSHOT"),
        nonBlank(properties.get("e2e.image.pullPolicy"), "IfNotPresent"),
        nonBlank(properties.get("e2e.vm.memory"), "1Mi"),
        nonBlank(properties.get("e2e.memlock.overhead"), "1Mi"),
        Optional.ofNullable(properties.get("e2e.node")).filter(s -> !s.isBlank()),
        Duration.ofSeconds(Long.parseLong(nonBlank(properties.get("e2e.timeout.seconds"), "240"))),
        helmSet(properties.get("e2e.helm.set")),
        Optional.ofNullable(properties.get("e2e.node.devicePluginDir")).filter(s -> !s.isBlank()).map(Path::of));
  }

  /**
   * Extra chart values of the cluster under test, {@code KEY=VALUE} separated by blanks (hack/local/e2e.sh:
   * the kubelet's root dir and the capability set its root can grant).
   */
  static Map<String, String> helmSet(String spec) {
    Map<String, String> values = new LinkedHashMap<>();
    if (spec != null) {
      for (String word : spec.trim().split("\\s+")) {
        if (word.isEmpty()) {
          continue;
        }
        int eq = word.indexOf('=');
        if (eq < 1) {
          throw new IllegalArgumentException("e2e.helm.set: '" + word + "' is not KEY=VALUE");
        }
        values.put(word.substring(0, eq), word.substring(eq + 1));
      }
    }
    return values;
  }

  static Path kubeconfig(Map<String, String> env) {
    String kubeconfig = env.get("KUBECONFIG");
    if (kubeconfig != null && !kubeconfig.isBlank()) {
      // KUBECONFIG may list several files; helm and fabric8 merge them, the first one names the cluster here
      return Path.of(kubeconfig.split(":")[0]);
    }
    return Path.of(env.getOrDefault("HOME", System.getProperty("user.home")), ".kube", "config");
  }

  /** Chart values the suite installs with (helm --set keys). */
  public Map<String, Object> helmValues() {
    Map<String, Object> values = new LinkedHashMap<>();
    values.put("namespace.name", operatorNamespace);
    values.put("namespace.create", true);
    values.put("image.repository", imageRepository);
    values.put("image.tag", imageTag);
    values.put("image.pullPolicy", imagePullPolicy);
    values.put("operator.memlockOverhead", memlockOverhead);
    values.put("operator.logLevel", "debug");
    // the UID audit's heartbeat, fast enough to watch it move
    values.put("nodeDaemon.auditInterval", "3s");
    values.putAll(extraHelmValues);
    return values;
  }

  public long vmMemoryBytes() {
    return bytes(vmMemory);
  }

  /** RLIMIT_MEMLOCK every test VM must get: memory + overhead (no devices, no vIOMMU: factor 1). */
  public long expectedMemlockBytes() {
    return Math.addExact(vmMemoryBytes(), bytes(memlockOverhead));
  }

  static long bytes(String quantity) {
    return Quantity.getAmountInBytes(new Quantity(quantity)).longValueExact();
  }

  private static String nonBlank(String value, String fallback) {
    return value == null || value.isBlank() ? fallback : value;
  }
}
