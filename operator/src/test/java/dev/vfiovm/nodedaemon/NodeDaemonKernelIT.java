package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.UidAudit;
import dev.vfiovm.testing.KubeApiServerFixture;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The UID audit on the host kernel against a real API server: a process really running under a UID of the
 * range (util-linux setpriv) is listed in the node's {@value UidAudit#ANNOTATION}, and gone from it once the
 * kernel reaped it; scannedAt moves on every scan.
 */
class NodeDaemonKernelIT {
  // a range of its own, away from the default VM range other tiers use on this machine
  static final long START = 2_000_000_000L;
  static final long SIZE = 16;
  Process held;

  @AfterEach
  void tearDown() throws Exception {
    if (held != null) {
      held.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    }
  }

  @Test
  void aProcessUnderARangeUidIsListedThenGone() throws Exception {
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (run the kernel tier as root)");
    Prerequisites.require(Files.isExecutable(Path.of("/usr/bin/setpriv")), "util-linux setpriv at /usr/bin/setpriv");
    long uid = START + 7;
    held = new ProcessBuilder("/usr/bin/setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
        "sleep", "600").inheritIO().start();
    // the kernel's view first: the process carries that UID
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() ->
        assertThat(UidScan.uidsOf(Files.readString(Path.of("/proc", Long.toString(held.pid()), "status"))))
            .containsExactly(uid, uid, uid, uid));

    try (KubernetesClient client = KubeApiServerFixture.newClient()) {
      String node = "audit-" + Long.toHexString(System.nanoTime());
      KubeApiServerFixture.createNode(client, node, "8Gi", Map.of(), Map.of());
      UidAuditor auditor = new UidAuditor(client, node, Path.of("/proc"), START, SIZE, Clock.systemUTC());

      UidAudit first = auditor.auditOnce();
      assertThat(first.liveUids()).containsExactly(uid);
      UidAudit annotated = UidAudit.fromJson(
          client.nodes().withName(node).get().getMetadata().getAnnotations().get(UidAudit.ANNOTATION));
      assertThat(annotated).isEqualTo(first);
      assertThat(annotated.uidRangeStart()).isEqualTo(START);
      assertThat(annotated.uidRangeSize()).isEqualTo(SIZE);

      held.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(1100)).untilAsserted(() -> {
        UidAudit now = auditor.auditOnce();
        UidAudit seen = UidAudit.fromJson(
            client.nodes().withName(node).get().getMetadata().getAnnotations().get(UidAudit.ANNOTATION));
        assertThat(seen.liveUids()).doesNotContain(uid);
        assertThat(seen).isEqualTo(now);
        assertThat(Instant.parse(seen.scannedAt())).isAfter(Instant.parse(first.scannedAt()));
      });
      client.nodes().withName(node).delete();
    }
  }
}
