package dev.vfiovm.local;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.testing.Prerequisites;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The main job end to end on this host: `vfiovm standalone --check` starts a real kube-apiserver, the operator
 * as its own process and the node agents as local processes on the real kernel, applies the bundled examples
 * and releases everything. The two small VMs must both pin their memory under distinct host UIDs (the seed's
 * fix), the oversized one must wait for budget.
 */
class StandaloneIT {
  private static final Path KUBE_API_TEST_DIR =
      Path.of(System.getProperty("kubeapitest.dir", System.getProperty("user.home") + "/.cache/vfiovm/kubeapitest"));

  @Test
  void examplesRunSideBySideUnderDistinctUidsAndAreReleased(@TempDir Path work) throws Exception {
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (node agents set limits and "
        + "map user namespaces)");
    Prerequisites.require(Files.isDirectory(KUBE_API_TEST_DIR.resolve("k8s")),
        "kube-apiserver binaries under " + KUBE_API_TEST_DIR + " (run hack/setup.sh 20-kube-apiserver)");
    Path jar = Path.of(System.getenv().getOrDefault("VFIOVM_JAR", "target/vfiovm.jar"));
    Prerequisites.require(Files.isRegularFile(jar), "the shaded jar " + jar + " (mvn package)");

    Path output = work.resolve("out.txt");
    List<String> command = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(),
        "standalone", "--check", "--timeout", "150", "--work-dir", work.resolve("state").toString(),
        "--kube-api-test-dir", KUBE_API_TEST_DIR.toString(),
        // a UID range of its own: per-user counters are host-wide, so another run's VM must not share a UID
        "--uid-range-start", Long.toString(0x70000000L + 0x10000L + new java.util.Random().nextInt(1 << 20))));
    Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(output.toFile()).start();
    boolean finished = process.waitFor(200, TimeUnit.SECONDS);
    if (!finished) {
      process.destroyForcibly();
    }
    String text = read(output);
    assertThat(finished).as("standalone --check finished in time; output:%n%s", text).isTrue();
    assertThat(process.exitValue()).as("exit code; output:%n%s", text).isZero();

    // the last table printed before deletion: two Running rows with distinct UIDs and 2 MiB pinned each
    Matcher running = Pattern.compile("(?m)^default\\s+(vm-a|vm-b)\\s+Running\\s+\\S+\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)")
        .matcher(text);
    List<String> uids = new ArrayList<>();
    List<String> lastRows = new ArrayList<>();
    while (running.find()) {
      lastRows.add(running.group(1) + " uid=" + running.group(2) + " pinned=" + running.group(4));
      uids.add(running.group(2));
      assertThat(Long.parseLong(running.group(4))).isEqualTo(2L << 20);
      assertThat(Long.parseLong(running.group(3))).isEqualTo(3L << 20); // 2Mi memory + 1Mi overhead
    }
    assertThat(lastRows).as(text).isNotEmpty();
    assertThat(uids.subList(uids.size() - 2, uids.size())).doesNotHaveDuplicates();
    assertThat(text).containsPattern("(?m)^default\\s+vm-too-big\\s+Pending");
    assertThat(text).contains("all VfioVms and node pods are gone");
  }

  private static String read(Path file) throws IOException {
    return Files.exists(file) ? Files.readString(file, StandardCharsets.UTF_8) : "";
  }
}
