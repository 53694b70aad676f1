/* The iommufd tier's tiny guest payload: a Multiboot (v1) kernel that QEMU loads with -kernel (through
 * SeaBIOS and QEMU's multiboot option ROM), writes one line to COM1 (0x3f8) and halts with interrupts off.
 * It is all the scenarios that only need "QEMU started, bound, mapped, the guest runs" boot: the marker on
 * the console is the guest's first bytes, printed seconds after QMP says `running`, where a Linux L2 needs
 * minutes under nested TCG. Build: as --32 -o tiny-guest.o tiny-guest.S && ld -m elf_i386 -Ttext=0x100000
 * -o tiny-guest.elf tiny-guest.o (e2e/iommufd/build-payloads.sh). */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0
        .section .text
        .globl _start
        .align 4
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
_start:
        cli
        mov $msg, %esi
        mov $0x3f8, %dx
1:      lodsb
        test %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      hlt
        jmp 2b
msg:    .asciz "VFIOVM-TINY-GUEST running\r\n"
