package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class QemuVersionTest {
  @Test
  void parsesDebiansVersionLines() {
    assertThat(QemuVersion.parse("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"))
        .isEqualTo(new QemuVersion(10, 0, 2));
    assertThat(QemuVersion.parse("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"))
        .isEqualTo(new QemuVersion(7, 2, 19));
    assertThat(QemuVersion.parse("QEMU emulator version 9.0")).isEqualTo(new QemuVersion(9, 0, 0));
    assertThatThrownBy(() -> QemuVersion.parse("bash: qemu: not found")).hasMessageContaining("no 'QEMU emulator version");
  }

  @Test
  void nineIsTheMinimum() {
    assertThat(new QemuVersion(10, 0, 2).atLeast(QemuVersion.MINIMUM)).isTrue();
    assertThat(new QemuVersion(9, 0, 0).atLeast(QemuVersion.MINIMUM)).isTrue();
    assertThat(new QemuVersion(8, 2, 9).atLeast(QemuVersion.MINIMUM)).isFalse();
    assertThat(new QemuVersion(7, 2, 19).atLeast(QemuVersion.MINIMUM)).isFalse();
  }
}
