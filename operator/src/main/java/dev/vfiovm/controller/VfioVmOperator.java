package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderCallbacks;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.RuntimeInfo;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.javaoperatorsdk.operator.processing.retry.GenericRetry;
import io.javaoperatorsdk.operator.monitoring.micrometer.MicrometerMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The running operator: JOSDK with the VfioVm reconciler, Micrometer metrics, optional leader election and the
 * HTTP endpoints. The `operator` subcommand and the API-server tests run exactly this.
 */
public final class VfioVmOperator implements AutoCloseable {
  public static final String LEASE_NAME = "vfiovm-operator";
  private static final Logger log = LoggerFactory.getLogger(VfioVmOperator.class);

  private final Operator operator;
  private final VfioVmReconciler reconciler;
  private final PrometheusMeterRegistry registry;
  private final OperatorMetrics metrics;
  private final HttpEndpoints http;
  private volatile boolean closing;
  private final boolean electing;
  private volatile boolean leading;

  /**
   * Starts the operator.
   *
   * @param httpPort port of /healthz, /readyz, /metrics (0: any free port), negative: no endpoints
   * @param leaseNamespace namespace of the leader-election lease, or null for no leader election
   */
  public static VfioVmOperator start(KubernetesClient client, OperatorSettings settings, int httpPort,
      String leaseNamespace) throws IOException {
    return new VfioVmOperator(client, settings, httpPort, leaseNamespace);
  }

  private VfioVmOperator(KubernetesClient client, OperatorSettings settings, int httpPort, String leaseNamespace)
      throws IOException {
    electing = leaseNamespace != null;
    registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    new JvmMemoryMetrics().bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    operator = new Operator(o -> {
      o.withKubernetesClient(client)
          .withCloseClientOnStop(false)
          // the finalizer is added by an update with optimistic locking, not JOSDK's default server-side apply
          // of {name, namespace, finalizers}: that apply creates the VfioVm anew (without a spec) when it races a
          // delete that removed the finalizer by hand (found by ChurnFaultIT: a force-deleted VM came back with
          // "spec: missing"). Status writes stay server-side applies of the status subresource, which never creates.
          .withUseSSAToPatchPrimaryResource(false)
          .withMetrics(MicrometerMetrics.newMicrometerMetricsBuilder(registry).notCollectingMetricsPerResource().build());
      if (leaseNamespace != null) {
        o.withLeaderElectionConfiguration(LeaderElectionConfigurationBuilder.aLeaderElectionConfiguration(LEASE_NAME)
            .withLeaseNamespace(leaseNamespace)
            .withIdentity(identity())
            // a leader that loses its lease must stop reconciling at once: halt (a restart re-joins the
            // election); a clean close is no loss. JOSDK's own System.exit would deadlock in a shutdown hook.
            .withExitOnStopLeading(false)
            .withLeaderCallbacks(new LeaderCallbacks(() -> leading = true, () -> {
              leading = false;
              if (!closing) {
                log.error("lost the leader-election lease {}/{}; halting", leaseNamespace, LEASE_NAME);
                Runtime.getRuntime().halt(1);
              }
            }, leader -> log.info("leader is now {}", leader)))
            .build());
      }
    });
    reconciler = new VfioVmReconciler(client, settings);
    // the VfioVm cache without managedFields and last-applied copies (the operator reads neither)
    operator.register(reconciler, o -> o.withItemStore(new TrimmedItemStore<>())
        .withRetry(new GenericRetry().setMaxAttempts(settings.retryMaxAttempts())
            .setInitialInterval(settings.retryInitialIntervalMillis()).setIntervalMultiplier(2)
            .setMaxInterval(Math.max(settings.retryInitialIntervalMillis(), 60_000)))
        .withReconciliationMaxInterval(Duration.ofSeconds(settings.maxReconciliationIntervalSeconds())));
    metrics = new OperatorMetrics(registry, reconciler);
    operator.start();
    // seed the ledger and sweep orphan node pods once the caches are synced (and this replica leads)
    reconciler.seedWhenReady(() -> !closing && leading() && operator.getRuntimeInfo().isStarted()
        && operator.getRuntimeInfo().allEventSourcesAreHealthy());
    log.info("vfiovm operator started: node pods in {}, image {}, host UIDs {}, memlock overhead {}, host reserve {}"
            + ", leader election {}", settings.nodePodNamespace(), settings.nodePodImage(), settings.uidRange(),
        Quantities.human(settings.memlockOverheadBytes()), Quantities.human(settings.hostReserveBytes()),
        leaseNamespace == null ? "off" : "lease " + leaseNamespace + "/" + LEASE_NAME);
    http = httpPort < 0 ? null : new HttpEndpoints(httpPort, this::health, this::readiness, this::scrape);
  }

  private static String identity() {
    String pod = System.getenv("POD_NAME");
    if (pod != null && !pod.isBlank()) {
      return pod;
    }
    try {
      return InetAddress.getLocalHost().getHostName() + "-" + UUID.randomUUID().toString().substring(0, 8);
    } catch (UnknownHostException e) {
      return UUID.randomUUID().toString();
    }
  }

  /** Live while the HTTP server answers and no started informer has failed; a standby replica is live. */
  HttpEndpoints.Answer health() {
    if (standby()) {
      return HttpEndpoints.Answer.text(true, "ok (standby: another replica holds the lease)\n");
    }
    RuntimeInfo info = operator.getRuntimeInfo();
    if (info.isStarted() && !info.allEventSourcesAreHealthy()) {
      return HttpEndpoints.Answer.text(false, "unhealthy event sources: " + info.unhealthyEventSources() + "\n");
    }
    return HttpEndpoints.Answer.text(true, "ok\n");
  }

  /**
   * Ready once JOSDK has started and every event source (informer) is healthy. A standby replica is ready
   * too: it is waiting correctly, and a rollout must not stall on it.
   */
  HttpEndpoints.Answer readiness() {
    if (standby()) {
      return HttpEndpoints.Answer.text(true, "ready (standby: another replica holds the lease)\n");
    }
    RuntimeInfo info = operator.getRuntimeInfo();
    if (!info.isStarted()) {
      return HttpEndpoints.Answer.text(false, "operator not started\n");
    }
    if (!info.allEventSourcesAreHealthy()) {
      return HttpEndpoints.Answer.text(false, "unhealthy event sources: " + info.unhealthyEventSources() + "\n");
    }
    return HttpEndpoints.Answer.text(true, "ready\n");
  }

  private boolean standby() {
    return electing && !leading;
  }

  /** True unless leader election is on and another replica holds the lease. */
  public boolean leading() {
    return !standby();
  }

  HttpEndpoints.Answer scrape() {
    metrics.refresh();
    return new HttpEndpoints.Answer(200, "text/plain; version=0.0.4; charset=utf-8", registry.scrape());
  }

  public int httpPort() {
    return http == null ? -1 : http.port();
  }

  public VfioVmReconciler reconciler() {
    return reconciler;
  }

  @Override
  public void close() {
    closing = true;
    if (http != null) {
      http.close();
    }
    operator.stop();
    registry.close();
  }
}
