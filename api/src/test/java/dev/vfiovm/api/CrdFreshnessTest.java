package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CRD YAML in crds/ and in the Helm chart's crds/ must be what the Java model generates, as committed.
 * This module's build writes both files (CrdGeneration at process-classes, then maven-resources-plugin copies
 * the result), so a model change refreshes them in the work tree; this test only checks: it generates the CRD
 * afresh and compares it with the version of each file in git (the index, i.e. what is committed or staged);
 * in a source tree without git, with the files as they were before this build overwrote them (the build's
 * snapshot in target/crds-before-build). A model change whose CRD was not committed therefore fails here, in
 * CI too. To fix: build
 * ({@code mvn -pl api process-classes}) and commit {@code crds/} and {@code helm/vfiovm-operator/crds/}.
 */
class CrdFreshnessTest {
  static final String CRD = "vfiovms.vfiovm.dev-v1.yml";
  static final String[] COMMITTED = {"crds/" + CRD, "helm/vfiovm-operator/crds/" + CRD};

  static String fresh;

  @BeforeAll
  static void generate(@TempDir Path out) throws IOException {
    CrdGeneration.main(new String[] {out.toString()});
    fresh = Files.readString(out.resolve(CRD));
  }

  static Path repoRoot() {
    String root = System.getenv("VFIOVM_REPO_ROOT");
    return (root != null ? Path.of(root) : Path.of("..")).toAbsolutePath().normalize();
  }

  /** The file's content in git's index ({@code git show :PATH}); null where there is no git checkout. */
  static String inGit(String path) throws IOException, InterruptedException {
    Process git;
    try {
      git = new ProcessBuilder("git", "-C", repoRoot().toString(), "show", ":" + path)
          .redirectError(ProcessBuilder.Redirect.DISCARD).start();
    } catch (IOException noGit) {
      return noGitHere("no git binary (" + noGit.getMessage() + ")");
    }
    byte[] out = git.getInputStream().readAllBytes();
    assertThat(git.waitFor(60, TimeUnit.SECONDS)).as("git show :" + path + " finished").isTrue();
    if (git.exitValue() != 0) {
      Process inside = new ProcessBuilder("git", "-C", repoRoot().toString(), "rev-parse", "--git-dir")
          .redirectErrorStream(true).start();
      inside.getInputStream().readAllBytes();
      if (inside.waitFor() != 0) {
        return noGitHere(repoRoot() + " is not a git checkout");
      }
      fail(path + " is not in git: commit the generated CRD (git add " + path + ")");
    }
    return new String(out, StandardCharsets.UTF_8);
  }

  /** Without git: the file as this build found it, before its copy step (snapshot-committed-crds). */
  static String noGitHere(String why) {
    String dir = System.getProperty("vfiovm.crds.beforeBuild");
    if (dir == null || !Files.isDirectory(Path.of(dir))) {
      if ("true".equals(System.getenv("CI"))) {
        fail("CI=true: the committed CRD cannot be compared: " + why + ", and no pre-build snapshot");
      }
      assumeTrue(false, "the committed CRD cannot be compared: " + why + ", and no pre-build snapshot");
    }
    return null;
  }

  @Test
  void theCommittedCrdsAreTheGeneratedOne() throws Exception {
    for (String path : COMMITTED) {
      String committed = inGit(path);
      if (committed == null) {
        Path before = Path.of(System.getProperty("vfiovm.crds.beforeBuild")).resolve(path);
        assertThat(before).as(path + " was not in the source tree").exists();
        committed = Files.readString(before);
      }
      assertThat(committed)
          .as(path + " as committed is stale: the build has refreshed it from the model; commit it (git add crds "
              + "helm/vfiovm-operator/crds)")
          .isEqualTo(fresh);
    }
  }

  @Test
  void theBuildCopiedTheGeneratedCrdIntoTheWorkTree() throws IOException {
    for (String path : COMMITTED) {
      assertThat(Files.readString(repoRoot().resolve(path)))
          .as(path + " differs from the generated CRD: the api module's build copies it (mvn -pl api process-classes)")
          .isEqualTo(fresh);
    }
  }

  @Test
  void theGenerationIsTheOneOnTheClasspath() throws IOException {
    try (var in = CrdFreshnessTest.class.getClassLoader().getResourceAsStream("META-INF/fabric8/" + CRD)) {
      assertThat(in).as("generated CRD on the classpath (CrdGeneration at process-classes)").isNotNull();
      assertThat(new String(in.readAllBytes(), StandardCharsets.UTF_8)).isEqualTo(fresh);
    }
  }
}
