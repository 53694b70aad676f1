package dev.vfiovm.nodedaemon;

import dev.vfiovm.api.UidAudit;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import dev.vfiovm.cli.LogLevelOption;
import dev.vfiovm.cli.UidRangeOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * `vfiovm node-daemon`: the chart's DaemonSet vfiovm-node. Serves the kubelet device-plugin API for this node's
 * /dev/iommu and vfio-pci devices, and audits the VM UID range in the host's /proc (contract C2).
 */
@Command(
    name = "node-daemon",
    mixinStandardHelpOptions = true,
    resourceBundle = "dev.vfiovm.nodedaemon.NodeDaemonCommand",
    description = {
      "Kubelet device plugin for vfiovm.dev/iommu and vfiovm.dev/pci-DDDD-BB-SS.F, and the node's UID audit",
      "(annotation " + UidAudit.ANNOTATION + "). Every option defaults from the environment variable named in its description."
    })
public final class NodeDaemonCommand implements Callable<Integer> {
  /** Go-style durations as Kubernetes flags take them: 500ms, 15s, 2m, 1h. */
  static final class DurationConverter implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      return parse(value);
    }
  }

  static Duration parse(String value) {
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("(\\d+)(ms|s|m|h)").matcher(value.trim());
    if (!m.matches()) {
      throw new IllegalArgumentException("'" + value + "' is not a duration: use e.g. 500ms, 15s, 2m, 1h");
    }
    long n = Long.parseLong(m.group(1));
    return switch (m.group(2)) {
      case "ms" -> Duration.ofMillis(n);
      case "s" -> Duration.ofSeconds(n);
      case "m" -> Duration.ofMinutes(n);
      default -> Duration.ofHours(n);
    };
  }

  @Option(names = "--plugin-dir", defaultValue = "${env:VFIOVM_PLUGIN_DIR:-/var/lib/kubelet/device-plugins}",
      description = "The kubelet's device-plugin directory, holding kubelet.sock (env VFIOVM_PLUGIN_DIR; default ${DEFAULT-VALUE}).")
  Path pluginDir;

  @Option(names = "--host-root", defaultValue = "${env:VFIOVM_HOST_ROOT:-/}",
      description = "Where the host's /sys and /dev are seen (env VFIOVM_HOST_ROOT; default ${DEFAULT-VALUE}).")
  Path hostRoot;

  @Option(names = "--iommu-slots", defaultValue = "${env:VFIOVM_IOMMU_SLOTS:-64}",
      description = "How many containers may hold /dev/iommu at once (vfiovm.dev/iommu capacity; env VFIOVM_IOMMU_SLOTS; default ${DEFAULT-VALUE}).")
  int iommuSlots;

  @Option(names = "--device-scan-interval", converter = DurationConverter.class,
      defaultValue = "${env:VFIOVM_DEVICE_SCAN_INTERVAL:-5s}",
      description = "How often devices and kubelet.sock are checked (env VFIOVM_DEVICE_SCAN_INTERVAL; default 5s).")
  Duration deviceScanInterval;

  @Option(names = "--audit-interval", converter = DurationConverter.class,
      defaultValue = "${env:VFIOVM_AUDIT_INTERVAL:-15s}",
      description = "How often the host's /proc is scanned and the node annotated; 0s: no audit "
          + "(env VFIOVM_AUDIT_INTERVAL; default 15s).")
  Duration auditInterval;

  @Option(names = "--proc", defaultValue = "${env:VFIOVM_PROC:-/proc}",
      description = "The host's /proc (the pod has hostPID: true; env VFIOVM_PROC; default ${DEFAULT-VALUE}).")
  Path proc;

  @Option(names = "--node-name", defaultValue = "${env:NODE_NAME:-}",
      description = "This node (env NODE_NAME, from the downward API spec.nodeName).")
  String nodeName;

  /** The operator's range; descriptions worded for the audit in NodeDaemonCommand.properties. */
  @Mixin UidRangeOptions uidRange;

  @Mixin LogLevelOption logging;

  @Override
  public Integer call() throws Exception {
    logging.apply();
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    // grpc-netty sets SO_KEEPALIVE on every channel, which unix sockets do not have: one warning per connection
    System.setProperty("org.slf4j.simpleLogger.log.io.grpc.netty.shaded.io.netty.bootstrap", "error");
    Logger log = org.slf4j.LoggerFactory.getLogger(NodeDaemonCommand.class);
    boolean audit = !auditInterval.isZero();
    if (audit && nodeName.isBlank()) {
      System.err.println("vfiovm node-daemon: no node name for the UID audit: set NODE_NAME from the downward API "
          + "(fieldRef spec.nodeName) or --node-name, or --audit-interval 0s to run without the audit");
      return 2;
    }
    if (!java.nio.file.Files.isDirectory(pluginDir)) {
      System.err.println("vfiovm node-daemon: " + pluginDir + " is not a directory: mount the kubelet's "
          + "device-plugin directory there (hostPath /var/lib/kubelet/device-plugins) or set --plugin-dir");
      return 2;
    }
    ScheduledExecutorService timer = Executors.newScheduledThreadPool(2, r -> {
      Thread t = new Thread(r, "vfiovm-node-daemon");
      t.setDaemon(true);
      return t;
    });
    DevicePlugins plugins = new DevicePlugins(pluginDir, hostRoot, iommuSlots);
    KubernetesClient client = audit ? new KubernetesClientBuilder().build() : null;
    timer.scheduleWithFixedDelay(() -> {
      try {
        plugins.sync();
      } catch (RuntimeException e) {
        log.warn("device scan failed: {}", e.toString());
      }
    }, 0, deviceScanInterval.toMillis(), TimeUnit.MILLISECONDS);
    if (audit) {
      UidAuditor auditor = new UidAuditor(client, nodeName, proc, uidRange.start(), uidRange.size(), Clock.systemUTC());
      log.info("UID audit of {} range {}+{} every {}s, annotating node {} ({})", proc, uidRange.start(), uidRange.size(),
          auditInterval.toSeconds(), nodeName, UidAudit.ANNOTATION);
      timer.scheduleWithFixedDelay(() -> {
        try {
          UidAudit written = auditor.auditOnce();
          log.debug("UID audit: {}", written.toJson());
        } catch (RuntimeException e) {
          log.warn("UID audit of node {} failed: {}", nodeName, e.toString());
        }
      }, 0, auditInterval.toMillis(), TimeUnit.MILLISECONDS);
    }
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      timer.shutdownNow();
      plugins.close();
      if (client != null) {
        client.close();
      }
      stopped.countDown();
    }, "vfiovm-node-daemon-shutdown"));
    stopped.await();
    return 0;
  }
}
