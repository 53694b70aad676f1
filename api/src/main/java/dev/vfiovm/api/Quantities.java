package dev.vfiovm.api;

import io.fabric8.kubernetes.api.model.Quantity;
import java.math.BigDecimal;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Kubernetes quantities (4Gi, 512Mi, 1G, 3145728) as exact byte counts: the one parser of operator and agent. */
public final class Quantities {
  private static final Pattern PLAIN = Pattern.compile("^([+-]?[0-9]+(?:\\.[0-9]*)?|[+-]?\\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|)$");
  private static final Map<String, BigDecimal> MULTIPLIERS = Map.ofEntries(
      Map.entry("", BigDecimal.ONE),
      Map.entry("m", new BigDecimal("0.001")),
      Map.entry("k", BigDecimal.TEN.pow(3)),
      Map.entry("M", BigDecimal.TEN.pow(6)),
      Map.entry("G", BigDecimal.TEN.pow(9)),
      Map.entry("T", BigDecimal.TEN.pow(12)),
      Map.entry("P", BigDecimal.TEN.pow(15)),
      Map.entry("E", BigDecimal.TEN.pow(18)),
      Map.entry("Ki", BigDecimal.valueOf(2).pow(10)),
      Map.entry("Mi", BigDecimal.valueOf(2).pow(20)),
      Map.entry("Gi", BigDecimal.valueOf(2).pow(30)),
      Map.entry("Ti", BigDecimal.valueOf(2).pow(40)),
      Map.entry("Pi", BigDecimal.valueOf(2).pow(50)),
      Map.entry("Ei", BigDecimal.valueOf(2).pow(60)));

  private Quantities() {}

  /**
   * Bytes of a quantity such as 4Gi, 512Mi or 3145728.
   *
   * @throws IllegalArgumentException when it is not a quantity, not a whole number of bytes, or too large
   */
  public static long bytes(String quantity) {
    if (quantity == null || quantity.isBlank()) {
      throw new IllegalArgumentException("empty quantity");
    }
    BigDecimal amount;
    Matcher m = PLAIN.matcher(quantity.trim());
    if (m.matches()) {
      // exact arithmetic: fabric8's Quantity loses precision around 2^62 (4Ei came out as ...388000)
      amount = new BigDecimal(m.group(1)).multiply(MULTIPLIERS.get(m.group(2)));
    } else {
      try {
        amount = Quantity.getAmountInBytes(Quantity.parse(quantity.trim()));
      } catch (RuntimeException e) {
        throw new IllegalArgumentException("'" + quantity + "' is not a Kubernetes quantity (e.g. 4Gi, 512Mi)");
      }
    }
    try {
      return amount.longValueExact();
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(
          "'" + quantity + "' is not a whole number of bytes below 2^63 (" + amount.toPlainString() + ")");
    }
  }

  /**
   * Whole, positive bytes of a command-line value: {@link #bytes} with a message naming the option.
   *
   * @throws IllegalArgumentException saying what is wrong and what to give instead
   */
  public static long positiveBytes(String text, String what) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException(what + " is empty: give bytes, e.g. 4Gi or 4294967296");
    }
    long bytes;
    try {
      bytes = bytes(text);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(what + " " + e.getMessage() + ": use e.g. 4Gi, 512Mi or 4294967296");
    }
    if (bytes <= 0) {
      throw new IllegalArgumentException(what + " '" + text + "' must be positive");
    }
    return bytes;
  }

  /** A byte count for messages: exact Gi/Mi/Ki when it divides, else bytes. */
  public static String human(long bytes) {
    String[] units = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
    for (int i = 0; i < units.length; i++) {
      long unit = 1L << (10 * (units.length - i));
      if (bytes != 0 && bytes % unit == 0) {
        return (bytes / unit) + units[i];
      }
    }
    return Long.toString(bytes);
  }
}
