package dev.vfiovm.controller;

import io.fabric8.kubernetes.api.model.Quantity;
import java.math.BigDecimal;

/** Kubernetes quantities as exact byte counts. */
public final class Quantities {
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
    try {
      amount = Quantity.getAmountInBytes(Quantity.parse(quantity.trim()));
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("'" + quantity + "' is not a Kubernetes quantity (e.g. 4Gi, 512Mi)");
    }
    try {
      return amount.longValueExact();
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(
          "'" + quantity + "' is not a whole number of bytes below 2^63 (" + amount.toPlainString() + ")");
    }
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
