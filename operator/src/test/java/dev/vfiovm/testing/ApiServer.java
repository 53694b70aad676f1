package dev.vfiovm.testing;

import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The one set-up of the API-server tier (*IT): the JVM's real kube-apiserver ({@link KubeApiServerFixture},
 * started on first use; missing binaries skip the class, or fail it with CI=true, see {@link Prerequisites}),
 * the project's CRD installed once per class, a shared admin client, and per test a fresh node-pod namespace,
 * a fresh VM namespace and a node group (label {@link #GROUP_LABEL}) whose Nodes are deleted after the test.
 *
 * <pre>
 * &#64;RegisterExtension static final ApiServer api = ApiServer.withCrd();
 *
 * try (KubernetesClient client = api.newClient()) {   // or api.client(), closed after the class
 *   String nodePodNamespace = api.nodePodNamespace(); // vfiovm-system-&lt;random&gt;, this test's
 *   String ns = api.namespace();                      // vms-&lt;random&gt;, this test's
 *   Map&lt;String, String&gt; selector = api.selector();    // {vfiovm-test/group: this test's group}
 * </pre>
 */
public final class ApiServer implements BeforeAllCallback, AfterEachCallback, AfterAllCallback {
  /** Label of a test's Nodes; its VMs select them by it. */
  public static final String GROUP_LABEL = "vfiovm-test/group";

  private final boolean crd;
  private final List<String> fixedNamespaces;
  private KubernetesClient client;
  private String nodePodNamespace;
  private String namespace;
  private String group;

  private ApiServer(boolean crd, List<String> fixedNamespaces) {
    this.crd = crd;
    this.fixedNamespaces = fixedNamespaces;
  }

  /** The server with the project's generated CRDs installed (and established) before the class's tests. */
  public static ApiServer withCrd() {
    return new ApiServer(true, List.of());
  }

  /** The bare server. */
  public static ApiServer withoutCrd() {
    return new ApiServer(false, List.of());
  }

  /** Also a namespace of exactly this name, made before the class's tests unless it exists. */
  public ApiServer withNamespace(String name) {
    List<String> names = new ArrayList<>(fixedNamespaces);
    names.add(name);
    return new ApiServer(crd, List.copyOf(names));
  }

  @Override
  public void beforeAll(ExtensionContext context) {
    client = KubeApiServerFixture.newClient();
    if (crd) {
      KubeApiServerFixture.installCrds(client);
    }
    for (String name : fixedNamespaces) {
      if (client.namespaces().withName(name).get() == null) {
        client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(name).endMetadata().build())
            .create();
      }
    }
  }

  @Override
  public void afterEach(ExtensionContext context) {
    if (group != null && client != null) {
      client.nodes().withLabel(GROUP_LABEL, group).delete();
    }
    nodePodNamespace = null;
    namespace = null;
    group = null;
  }

  @Override
  public void afterAll(ExtensionContext context) {
    if (client != null) {
      client.close();
      client = null;
    }
  }

  /** The admin client of this class (closed after it). */
  public KubernetesClient client() {
    return client;
  }

  /** A new admin client; the caller closes it. */
  public KubernetesClient newClient() {
    return KubeApiServerFixture.newClient();
  }

  /** The server's admin kubeconfig. */
  public String kubeConfigYaml() {
    return KubeApiServerFixture.kubeConfigYaml();
  }

  /** A new namespace {@code prefix-<random>} on every call. */
  public String namespace(String prefix) {
    return KubeApiServerFixture.createNamespace(client, prefix);
  }

  /** This test's node-pod namespace (vfiovm-system-&lt;random&gt;), made on first use. */
  public String nodePodNamespace() {
    if (nodePodNamespace == null) {
      nodePodNamespace = namespace("vfiovm-system");
    }
    return nodePodNamespace;
  }

  /** This test's VM namespace (vms-&lt;random&gt;), made on first use. */
  public String namespace() {
    if (namespace == null) {
      namespace = namespace("vms");
    }
    return namespace;
  }

  /** This test's node group: label value of its Nodes, which are deleted after it. */
  public String group() {
    if (group == null) {
      group = "g" + UUID.randomUUID().toString().substring(0, 8);
    }
    return group;
  }

  /** {@code {GROUP_LABEL: group()}}: the node selector of this test's VMs and the labels of its Nodes. */
  public Map<String, String> selector() {
    return Map.of(GROUP_LABEL, group());
  }
}
