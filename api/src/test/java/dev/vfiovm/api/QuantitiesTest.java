package dev.vfiovm.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class QuantitiesTest {
  @Test
  void kubernetesFormsAreExactBytes() {
    assertThat(Quantities.bytes("4Mi")).isEqualTo(4L << 20);
    assertThat(Quantities.bytes("3145728")).isEqualTo(3145728);
    assertThat(Quantities.bytes("1.5Gi")).isEqualTo(3L << 29);
    assertThat(Quantities.bytes("2G")).isEqualTo(2_000_000_000L);
    assertThat(Quantities.bytes("4Ei")).isEqualTo(4L << 60);
    assertThat(Quantities.bytes("16380356Ki")).isEqualTo(16380356L * 1024);
    assertThat(Quantities.bytes("1e3")).isEqualTo(1000);
  }

  @Test
  void fractionsOfBytesAndGarbageAreRefused() {
    assertThatThrownBy(() -> Quantities.bytes("1m")).hasMessageContaining("whole number of bytes");
    assertThatThrownBy(() -> Quantities.bytes("8Ei")).hasMessageContaining("below 2^63");
    assertThatThrownBy(() -> Quantities.bytes("lots")).hasMessageContaining("not a Kubernetes quantity");
  }

  @Test
  void humanFormsAreExact() {
    assertThat(Quantities.human(2L << 30)).isEqualTo("2Gi");
    assertThat(Quantities.human(1536L << 20)).isEqualTo("1536Mi");
    assertThat(Quantities.human(1000)).isEqualTo("1000");
    assertThat(Quantities.human(0)).isEqualTo("0");
  }

  @Test
  void commandLineValuesTakeKubernetesForms() {
    assertThat(Quantities.positiveBytes("4Mi", "--memory")).isEqualTo(4L << 20);
    assertThat(Quantities.positiveBytes("3145728", "--memory")).isEqualTo(3145728L);
    assertThat(Quantities.positiveBytes("4Gi", "--memory")).isEqualTo(4L << 30);
    assertThat(Quantities.positiveBytes("1G", "--memory")).isEqualTo(1_000_000_000L);
    assertThat(Quantities.positiveBytes("1k", "--memory")).isEqualTo(1000L);
    assertThat(Quantities.positiveBytes(" 2Ki ", "--memory")).isEqualTo(2048L);
  }

  @Test
  void commandLineValuesMustBeWholePositiveByteCounts() {
    assertThatThrownBy(() -> Quantities.positiveBytes("4 apples", "--memory"))
        .hasMessageContaining("--memory '4 apples' is not a Kubernetes quantity");
    assertThatThrownBy(() -> Quantities.positiveBytes("0", "--memlock")).hasMessageContaining("must be positive");
    assertThatThrownBy(() -> Quantities.positiveBytes("-1Mi", "--memlock")).hasMessageContaining("must be positive");
    assertThatThrownBy(() -> Quantities.positiveBytes("100m", "--memory")).hasMessageContaining("whole number of bytes");
    assertThatThrownBy(() -> Quantities.positiveBytes("", "--memory")).hasMessageContaining("--memory is empty");
  }
}
