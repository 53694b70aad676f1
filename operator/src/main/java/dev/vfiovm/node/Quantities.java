package dev.vfiovm.node;

import io.fabric8.kubernetes.api.model.Quantity;
import java.math.BigDecimal;

/** Byte amounts in Kubernetes quantity forms (4Mi, 1G, 3145728), parsed by fabric8's Quantity. */
public final class Quantities {
  private Quantities() {}

  /** Whole, positive bytes; IllegalArgumentException saying what is wrong otherwise. */
  public static long bytes(String text, String what) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException(what + " is empty: give bytes, e.g. 4Gi or 4294967296");
    }
    BigDecimal amount;
    try {
      amount = Quantity.getAmountInBytes(Quantity.parse(text.trim()));
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          what + " '" + text + "' is not a Kubernetes quantity: use e.g. 4Gi, 512Mi or 4294967296");
    }
    if (amount.signum() <= 0) {
      throw new IllegalArgumentException(what + " '" + text + "' must be positive");
    }
    try {
      return amount.longValueExact();
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(what + " '" + text + "' is not a whole number of bytes (or too large)");
    }
  }
}
