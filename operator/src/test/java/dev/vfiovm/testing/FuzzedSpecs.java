package dev.vfiovm.testing;

import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.controller.SpecValidation;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.Tuple;

/**
 * Generated VfioVm specs for the fault suite's fuzzing (jqwik), within and beyond the schema: memory as quantity
 * strings, byte counts, junk and nothing; device address lists (valid, upper-case, malformed, duplicated, null,
 * too many); node names and nodeSelector keys/values of every length around the limits; cpus around the range;
 * names up to and beyond 63 characters; optional fields absent or JSON null. Each spec is a JSON map (so it can
 * be what the typed model cannot say) plus what only the CRD refuses ({@link Fuzzed#crdOnly}), and knows which
 * of {@link SpecValidation}'s verdicts the CRD has a rule for ({@link #sharedViolations}).
 */
public final class FuzzedSpecs {
  private static final AtomicLong SEQ = new AtomicLong();
  private static final String DNS = "abcdefghijklmnopqrstuvwxyz0123456789";

  private FuzzedSpecs() {}

  /** One generated VfioVm: its name, its spec as JSON, and why only the CRD refuses it (or null). */
  public record Fuzzed(String name, Map<String, Object> spec, String crdOnly) {
    /** The spec as the operator reads it: JSON nulls pruned (as the API server does), then the typed model. */
    public VfioVmSpec typed() {
      return Serialization.jsonMapper().convertValue(pruned(spec), VfioVmSpec.class);
    }

    public boolean memoryIsNumber() {
      return spec.get("memory") instanceof Number;
    }

    @Override
    public String toString() {
      return name + " (" + name.length() + " chars) " + Serialization.asJson(spec)
          + (crdOnly == null ? "" : " [CRD only: " + crdOnly + "]");
    }
  }

  @SuppressWarnings("unchecked")
  static Object pruned(Object o) {
    if (o instanceof Map<?, ?> m) {
      Map<String, Object> out = new LinkedHashMap<>();
      ((Map<String, Object>) m).forEach((k, v) -> {
        if (v != null) {
          out.put(k, pruned(v));
        }
      });
      return out;
    }
    if (o instanceof List<?> l) {
      List<Object> out = new ArrayList<>();
      l.forEach(v -> out.add(pruned(v)));
      return out;
    }
    return o;
  }

  /**
   * SpecValidation's violations that the CRD has a rule for too (required, patterns, duplicates, maxItems, cpus
   * range, a byte count that is no whole number of pages); the others are the operator's alone (a quantity
   * string that is no whole number of pages, overflow).
   */
  public static List<SpecValidation.Violation> sharedViolations(SpecValidation.Result result, Fuzzed f) {
    return result.violations().stream().filter(v -> {
      String field = v.field();
      if (field.equals("spec.memory")) {
        return v.message().startsWith("required") || v.message().contains("is not a positive quantity")
            || (f.memoryIsNumber() && v.message().contains("4 KiB pages"));
      }
      return field.startsWith("spec.devices") || field.startsWith("spec.nodeName")
          || field.startsWith("spec.nodeSelector") || field.equals("spec.cpus");
    }).toList();
  }

  /** VMs placeable on {@code nodeNames} (carrying {@code nodeLabels}) about a third of the time. */
  public static Arbitrary<Fuzzed> vms(List<String> nodeNames, Map<String, String> nodeLabels) {
    Arbitrary<Object> memory = Arbitraries.frequencyOf(
        Tuple.of(12, Combinators.combine(Arbitraries.integers().between(1, 16), Arbitraries.of("Mi", "Mi", "Mi", "Ki"))
            .as((n, unit) -> (Object) (unit.equals("Ki") ? 4 * n + unit : n + unit))),
        Tuple.of(2, Combinators.combine(Arbitraries.integers().between(1, 64),
            Arbitraries.of("Ki", "Mi", "Gi", "Ti", "Ei", "k", "M", "G", "", "m"))
            .as((n, unit) -> (Object) (n + unit))),
        Tuple.of(2, Arbitraries.of("1.5Mi", "0.5Ki", "4096", "4097", "0", "0Mi", "-1Mi", "1e3", "1Mi ", " 1Mi", "1mi", "+1Mi",
            "0.000001Ei", "9Ei", "8Ei", "1.0000000001Gi", "", "00001Mi", ".5Mi", "1..5Mi", "Mi", "１Mi", "1Mi\n")
            .map(s -> (Object) s)),
        Tuple.of(1, Arbitraries.strings().withChars("0123456789.KMGTPEikm-+ e").ofMinLength(0).ofMaxLength(70)
            .map(s -> (Object) s)),
        Tuple.of(2, Arbitraries.longs().between(-2, 1L << 12).map(n -> (Object) (n * 4096))),
        Tuple.of(1, Arbitraries.longs().between(-10_000, 1L << 40).map(n -> (Object) n)),
        Tuple.of(1, Arbitraries.just(null)));
    Arbitrary<Object> address = Arbitraries.frequencyOf(
        Tuple.of(8, Arbitraries.of("0000:3b:00.0", "0000:3b:00.1", "0000:00:03.0", "ffff:ff:1f.7").map(s -> (Object) s)),
        Tuple.of(1, Arbitraries.of("0000:3B:00.0", "0000:3b:00.8", "3b:00.0", "0000:3b:00", "0000:3b:00.0 ",
            "00000:3b:00.0", "0000-3b-00.0", "", "pci-0000:3b:00.0", "0000:3b:0g.0").map(s -> (Object) s)),
        Tuple.of(1, Arbitraries.strings().withChars("0123456789abcdefABCDEF:.").ofMaxLength(14).map(s -> (Object) s)),
        Tuple.of(1, Arbitraries.just(null)));
    Arbitrary<Object> device = address.map(a -> {
      Map<String, Object> d = new LinkedHashMap<>();
      d.put("pciAddress", a);
      return (Object) d;
    });
    Arbitrary<Object> devices = Arbitraries.frequencyOf(
        Tuple.of(6, Arbitraries.just(null)),
        Tuple.of(3, device.list().ofMaxSize(3).map(l -> (Object) l)),
        Tuple.of(1, device.list().ofMinSize(31).ofMaxSize(34).map(l -> (Object) l)));
    Arbitrary<Object> nodeName = Arbitraries.frequencyOf(
        Tuple.of(8, Arbitraries.just(null)),
        Tuple.of(3, Arbitraries.of(nodeNames.toArray(String[]::new)).map(s -> (Object) s)),
        Tuple.of(1, dnsName(1, 20).map(s -> (Object) s)),
        Tuple.of(1, dnsName(250, 256).map(s -> (Object) s)),
        Tuple.of(1, Arbitraries.of("", "Node-1", "node_1", "-node", "node-", "node..x", "n.", "nöde").map(s -> (Object) s)));
    Arbitrary<String> labelName = Arbitraries.oneOf(
        labelish(1, 10), labelish(62, 65), Arbitraries.of("-x", "x-", "a b", "a/b/c", "", "_x", "x.y_z"));
    Arbitrary<String> labelKey = Arbitraries.oneOf(
        labelName,
        Combinators.combine(Arbitraries.oneOf(dnsName(1, 12), dnsName(252, 255), Arbitraries.of("Example.com", "")),
            labelName).as((p, n) -> p + "/" + n));
    Arbitrary<Object> selector = Arbitraries.frequencyOf(
        Tuple.of(8, Arbitraries.just((Object) new LinkedHashMap<>(nodeLabels))),
        Tuple.of(3, Arbitraries.maps(labelKey, Arbitraries.oneOf(labelName, Arbitraries.of(""))).ofMaxSize(3)
            .map(m -> (Object) m)),
        Tuple.of(1, Arbitraries.maps(labelish(1, 8), labelish(1, 4)).ofMinSize(63).ofMaxSize(66).map(m -> (Object) m)),
        Tuple.of(1, Arbitraries.just(null)));
    Arbitrary<Object> cpus = Arbitraries.frequencyOf(
        Tuple.of(6, Arbitraries.just(null)),
        Tuple.of(3, Arbitraries.of(1, 2, 64).map(i -> (Object) i)),
        Tuple.of(1, Arbitraries.of(-1, 0, 65, 1000).map(i -> (Object) i)));
    Arbitrary<Object> backend = Arbitraries.of("IoUring", "IoUring", "Auto").map(s -> (Object) s);
    Arbitrary<Integer> nameLength = Arbitraries.frequencyOf(Tuple.of(4, Arbitraries.integers().between(5, 20)),
        Tuple.of(3, Arbitraries.integers().between(60, 66)), Tuple.of(2, Arbitraries.integers().between(90, 100)));
    return Combinators.combine(memory, devices, nodeName, selector, cpus, backend, nameLength, Arbitraries.of(true, false))
        .as((mem, devs, node, sel, cpu, dma, len, explicitNull) -> {
          Map<String, Object> spec = new LinkedHashMap<>();
          put(spec, "memory", mem, explicitNull);
          put(spec, "devices", devs, explicitNull);
          put(spec, "nodeName", node, explicitNull);
          put(spec, "nodeSelector", sel, explicitNull);
          put(spec, "cpus", cpu, explicitNull);
          spec.put("dmaBackend", dma);
          String name = name(len);
          List<String> crdOnly = new ArrayList<>();
          if (name.length() > 63) {
            crdOnly.add("metadata.name longer than 63");
          }
          if (mem instanceof String s && s.length() > 64) {
            crdOnly.add("spec.memory longer than 64");
          }
          if (sel instanceof Map<?, ?> m && m.size() > VfioVmSpec.MAX_NODE_SELECTOR) {
            crdOnly.add("spec.nodeSelector has more than 64 labels");
          }
          return new Fuzzed(name, spec, crdOnly.isEmpty() ? null : String.join(", ", crdOnly));
        });
  }

  /** A null from the generator: the field absent, or JSON null when {@code explicitNull}. */
  private static void put(Map<String, Object> spec, String key, Object value, boolean explicitNull) {
    if (value != null || explicitNull) {
      spec.put(key, value);
    }
  }

  /** A unique DNS-subdomain name of exactly {@code length} characters. */
  static String name(int length) {
    StringBuilder b = new StringBuilder("f" + SEQ.incrementAndGet() + "x");
    while (b.length() < length) {
      b.append(DNS.charAt(b.length() % DNS.length()));
    }
    return b.toString();
  }

  private static Arbitrary<String> dnsName(int min, int max) {
    return Arbitraries.strings().withChars(DNS + "-.").ofMinLength(min).ofMaxLength(max)
        .map(s -> s.length() < 2 ? "a" : "a" + s.substring(1, s.length() - 1) + "z");
  }

  private static Arbitrary<String> labelish(int min, int max) {
    return Arbitraries.strings().withChars("abcXYZ019-_.").ofMinLength(min).ofMaxLength(max);
  }
}
