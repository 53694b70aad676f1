package dev.vfiovm.e2e.chart;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.TemplateCommand;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** Renders the chart as `helm template` would (helm-java, no helm binary) into fabric8 objects. */
public final class ChartRendering {
  /** Kubernetes version the chart is rendered for: the version of the test API server. */
  public static final String KUBE_VERSION = "v1.20.2";

  public static final String RELEASE = "vfiovm";
  public static final String RELEASE_NAMESPACE = "default";

  private ChartRendering() {}

  /** The chart directory: system property vfiovm.chart.dir (set by the e2e pom), else found from the cwd. */
  public static Path chartDir() {
    String property = System.getProperty("vfiovm.chart.dir");
    Path dir =
        property != null
            ? Path.of(property)
            : Path.of("").toAbsolutePath().resolve("../helm/vfiovm-operator").normalize();
    if (!Files.isRegularFile(dir.resolve("Chart.yaml"))) {
      throw new IllegalStateException("no chart at " + dir + " (set -Dvfiovm.chart.dir)");
    }
    return dir.toAbsolutePath().normalize();
  }

  /** The rendered manifests (CRDs included) as one YAML stream, or an exception with Helm's message. */
  public static String template(Map<String, ?> values) {
    TemplateCommand template =
        new Helm(chartDir())
            .template()
            .withName(RELEASE)
            .withNamespace(RELEASE_NAMESPACE)
            .withKubeVersion(KUBE_VERSION);
    values.forEach(template::set);
    return template.call();
  }

  public static Rendered render(Map<String, ?> values) {
    return new Rendered(parse(template(values)));
  }

  static List<HasMetadata> parse(String yamlStream) {
    List<HasMetadata> objects = new ArrayList<>();
    for (String document : yamlStream.split("(?m)^---\\s*$")) {
      if (document.lines().allMatch(line -> line.isBlank() || line.startsWith("#"))) {
        continue;
      }
      objects.add(Serialization.unmarshal(document, HasMetadata.class));
    }
    return objects;
  }

  /** Rendered objects, looked up by kind and name. */
  public record Rendered(List<HasMetadata> objects) {
    public <T extends HasMetadata> Optional<T> find(Class<T> type, String name) {
      return objects.stream()
          .filter(type::isInstance)
          .map(type::cast)
          .filter(o -> o.getMetadata().getName().equals(name))
          .findFirst();
    }

    public <T extends HasMetadata> T get(Class<T> type, String name) {
      return find(type, name)
          .orElseThrow(
              () -> new AssertionError("chart rendered no " + type.getSimpleName() + " " + name + ": " + kinds()));
    }

    public <T extends HasMetadata> List<T> all(Class<T> type) {
      return objects.stream().filter(type::isInstance).map(type::cast).toList();
    }

    public List<String> kinds() {
      return objects.stream().map(o -> o.getKind() + "/" + o.getMetadata().getName()).toList();
    }
  }

  /** Values as an ordered map (helm-java passes them as --set). */
  public static Map<String, Object> values(Object... keyValues) {
    Map<String, Object> map = new LinkedHashMap<>();
    for (int i = 0; i < keyValues.length; i += 2) {
      map.put((String) keyValues[i], keyValues[i + 1]);
    }
    return map;
  }
}
