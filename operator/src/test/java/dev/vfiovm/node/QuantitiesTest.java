package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class QuantitiesTest {
  @Test
  void acceptsKubernetesForms() {
    assertThat(Quantities.bytes("4Mi", "--memory")).isEqualTo(4L << 20);
    assertThat(Quantities.bytes("3145728", "--memory")).isEqualTo(3145728L);
    assertThat(Quantities.bytes("4Gi", "--memory")).isEqualTo(4L << 30);
    assertThat(Quantities.bytes("1G", "--memory")).isEqualTo(1_000_000_000L);
    assertThat(Quantities.bytes("1k", "--memory")).isEqualTo(1000L);
    assertThat(Quantities.bytes(" 2Ki ", "--memory")).isEqualTo(2048L);
  }

  @Test
  void rejectsWhatIsNotAWholePositiveByteCount() {
    assertThatThrownBy(() -> Quantities.bytes("4 apples", "--memory"))
        .hasMessageContaining("--memory '4 apples' is not a Kubernetes quantity");
    assertThatThrownBy(() -> Quantities.bytes("0", "--memlock")).hasMessageContaining("must be positive");
    assertThatThrownBy(() -> Quantities.bytes("-1Mi", "--memlock")).hasMessageContaining("must be positive");
    assertThatThrownBy(() -> Quantities.bytes("100m", "--memory")).hasMessageContaining("whole number of bytes");
    assertThatThrownBy(() -> Quantities.bytes("", "--memory")).hasMessageContaining("--memory is empty");
  }
}
