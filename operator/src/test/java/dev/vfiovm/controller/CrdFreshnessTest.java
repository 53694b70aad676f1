package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The CRD YAML committed under crds/ (and copied into the Helm chart) must be what the Java model generates.
 * To refresh them: {@code mvn -pl operator test -Dtest=CrdFreshnessTest -Dvfiovm.updateCrds=true}.
 */
class CrdFreshnessTest {
  static final String CRD = "vfiovms.vfiovm.dev-v1.yml";

  static String generated() throws IOException {
    try (InputStream in = CrdFreshnessTest.class.getClassLoader().getResourceAsStream("META-INF/fabric8/" + CRD)) {
      assertThat(in).as("generated CRD on the classpath (crd-generator-maven-plugin)").isNotNull();
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  static Path repoRoot() {
    String root = System.getenv("VFIOVM_REPO_ROOT");
    return root != null ? Path.of(root) : Path.of("..");
  }

  static void check(Path committed, boolean required) throws IOException {
    if (!required && !Files.exists(committed)) {
      return;
    }
    String generated = generated();
    if (Boolean.getBoolean("vfiovm.updateCrds")) {
      Files.writeString(committed, generated);
    }
    assertThat(committed).as("committed CRD").exists();
    assertThat(Files.readString(committed))
        .as(committed + " is stale: run mvn -pl operator test -Dtest=CrdFreshnessTest -Dvfiovm.updateCrds=true")
        .isEqualTo(generated);
  }

  @Test
  void theCommittedCrdIsTheGeneratedOne() throws IOException {
    check(repoRoot().resolve("crds").resolve(CRD), true);
  }

  @Test
  void theHelmChartsCrdIsTheGeneratedOne() throws IOException {
    check(repoRoot().resolve("helm/vfiovm-operator/crds").resolve(CRD), false);
  }
}
