/*
 * vfiovm's tiny demo guest: a bare-metal multiboot (v1) kernel, 32-bit protected mode, no C, no libc.
 * QEMU loads it with `-kernel kernel.elf` (its multiboot loader, on any x86 machine incl. q35) into a guest
 * of 2-6 MiB: small enough to pin under a few MiB of RLIMIT_MEMLOCK, where Linux does not fit.
 *
 * It prints on COM1 (0x3f8, 115200 8N1)
 *   vfiovm-guest: booted (bare-metal multiboot payload) mem=<KiB>KiB cmdline=<-append>
 * then, every 5 s, "vfiovm-guest: heartbeat <n> uptime=<s>s", forever. Between lines the CPU halts
 * (`hlt`) and wakes on the PIT's IRQ0 at 100 Hz (8259 PIC remapped to vectors 0x20-0x2f), so an idle
 * guest costs the host (TCG) almost nothing.
 */
#define MB_MAGIC     0x1BADB002
#define MB_FLAGS     0x00000003          /* bit 0: modules page aligned, bit 1: give us mem_lower/upper */
#define COM1         0x3f8
#define HZ           100
#define BEAT_TICKS   (5 * HZ)

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .code32
        .globl _start
_start:
        cli
        mov     $stack_top, %esp
        mov     %ebx, mbinfo             /* multiboot information structure (eax = 0x2BADB002) */
        mov     %eax, mbmagic

        /* our own GDT: the loader's GDTR may be invalid, and iret reloads CS from it */
        lgdt    gdt_desc
        ljmp    $0x08, $1f
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %fs
        mov     %ax, %gs
        mov     %ax, %ss

        call    serial_init
        mov     $msg_banner, %esi
        call    puts
        /* mem=: mem_lower + mem_upper (KiB) when the loader gave them (flags bit 0) */
        mov     mbinfo, %ebx
        cmpl    $0x2BADB002, mbmagic
        jne     2f
        testl   $1, (%ebx)
        jz      2f
        mov     $msg_mem, %esi
        call    puts
        mov     4(%ebx), %eax
        add     8(%ebx), %eax
        call    putdec
        mov     $msg_kib, %esi
        call    puts
        /* cmdline= (flags bit 2) */
        testl   $4, (%ebx)
        jz      2f
        mov     $msg_cmdline, %esi
        call    puts
        mov     16(%ebx), %esi
        call    puts
2:      mov     $msg_crlf, %esi
        call    puts

        call    idt_init
        call    pic_init
        call    pit_init
        sti

        xor     %edi, %edi               /* heartbeat counter */
        movl    $BEAT_TICKS, next_beat
idle:   hlt                              /* until the next interrupt */
        mov     ticks, %eax
        cmp     next_beat, %eax
        jb      idle
        addl    $BEAT_TICKS, next_beat
        inc     %edi
        mov     $msg_beat, %esi
        call    puts
        mov     %edi, %eax
        call    putdec
        mov     $msg_uptime, %esi
        call    puts
        mov     ticks, %eax
        xor     %edx, %edx
        mov     $HZ, %ecx
        div     %ecx
        call    putdec
        mov     $msg_s, %esi
        call    puts
        jmp     idle

/* ---- COM1 ---- */
serial_init:
        mov     $COM1+1, %dx; mov $0x00, %al; out %al, %dx   /* no UART interrupts */
        mov     $COM1+3, %dx; mov $0x80, %al; out %al, %dx   /* DLAB */
        mov     $COM1+0, %dx; mov $0x01, %al; out %al, %dx   /* divisor 1: 115200 baud */
        mov     $COM1+1, %dx; mov $0x00, %al; out %al, %dx
        mov     $COM1+3, %dx; mov $0x03, %al; out %al, %dx   /* 8N1 */
        mov     $COM1+2, %dx; mov $0xC7, %al; out %al, %dx   /* FIFO on, cleared */
        mov     $COM1+4, %dx; mov $0x03, %al; out %al, %dx   /* DTR + RTS */
        ret

/* putc: %al -> COM1 (waits for the transmit holding register) */
putc:
        push    %edx
        push    %eax
        mov     $COM1+5, %dx
1:      in      %dx, %al
        test    $0x20, %al
        jz      1b
        pop     %eax
        mov     $COM1, %dx
        out     %al, %dx
        pop     %edx
        ret

/* puts: NUL-terminated string at %esi */
puts:
        push    %eax
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc
        jmp     1b
2:      pop     %eax
        ret

/* putdec: unsigned %eax in decimal */
putdec:
        push    %eax
        push    %ebx
        push    %ecx
        push    %edx
        mov     $10, %ebx
        xor     %ecx, %ecx
1:      xor     %edx, %edx
        div     %ebx
        push    %edx
        inc     %ecx
        test    %eax, %eax
        jnz     1b
2:      pop     %eax
        add     $'0', %al
        call    putc
        loop    2b
        pop     %edx
        pop     %ecx
        pop     %ebx
        pop     %eax
        ret

/* ---- interrupts ---- */
/* every vector -> ignore_isr (just iret); 0x20 (IRQ0) -> timer_isr; 0x21-0x2f -> EOI only */
idt_init:
        xor     %ecx, %ecx
1:      mov     $ignore_isr, %eax
        cmp     $0x20, %ecx
        jne     2f
        mov     $timer_isr, %eax
        jmp     3f
2:      cmp     $0x21, %ecx
        jb      3f
        cmp     $0x2f, %ecx
        ja      3f
        mov     $irq_isr, %eax
3:      lea     idt(,%ecx,8), %edx
        mov     %ax, (%edx)              /* offset 15:0 */
        movw    $0x08, 2(%edx)           /* code selector */
        movw    $0x8E00, 4(%edx)         /* present, ring 0, 32-bit interrupt gate */
        shr     $16, %eax
        mov     %ax, 6(%edx)             /* offset 31:16 */
        inc     %ecx
        cmp     $256, %ecx
        jb      1b
        lidt    idt_desc
        ret

/* 8259A pair: master -> 0x20, slave -> 0x28; only IRQ0 unmasked */
pic_init:
        mov     $0x11, %al; out %al, $0x20; out %al, $0xA0   /* ICW1: init, ICW4 follows */
        mov     $0x20, %al; out %al, $0x21                   /* ICW2 master: vector base */
        mov     $0x28, %al; out %al, $0xA1                   /* ICW2 slave */
        mov     $0x04, %al; out %al, $0x21                   /* ICW3: slave on IRQ2 */
        mov     $0x02, %al; out %al, $0xA1
        mov     $0x01, %al; out %al, $0x21; out %al, $0xA1   /* ICW4: 8086 mode */
        mov     $0xFE, %al; out %al, $0x21                   /* mask all but IRQ0 */
        mov     $0xFF, %al; out %al, $0xA1
        ret

/* PIT channel 0, mode 2 (rate generator), 1193182 Hz / 11932 = 100 Hz */
pit_init:
        mov     $0x34, %al; out %al, $0x43
        mov     $(11932 & 0xff), %al; out %al, $0x40
        mov     $(11932 >> 8), %al; out %al, $0x40
        ret

timer_isr:
        push    %eax
        incl    ticks
        mov     $0x20, %al
        out     %al, $0x20               /* EOI */
        pop     %eax
        iret

irq_isr:
        push    %eax
        mov     $0x20, %al
        out     %al, $0xA0
        out     %al, $0x20
        pop     %eax
        iret

ignore_isr:
        iret

/* ---- data ---- */
        .section .rodata
msg_banner:  .asciz "vfiovm-guest: booted (bare-metal multiboot payload)"
msg_mem:     .asciz " mem="
msg_kib:     .asciz "KiB"
msg_cmdline: .asciz " cmdline="
msg_crlf:    .asciz "\r\n"
msg_beat:    .asciz "vfiovm-guest: heartbeat "
msg_uptime:  .asciz " uptime="
msg_s:       .asciz "s\r\n"

        .data
        .align 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF          /* 0x08: code, base 0, 4 GiB, 32-bit */
        .quad 0x00CF92000000FFFF          /* 0x10: data */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
idt_desc:
        .word 256 * 8 - 1
        .long idt

        .bss
        .align 16
mbinfo:    .long 0
mbmagic:   .long 0
ticks:     .long 0
next_beat: .long 0
        .align 8
idt:    .skip 256 * 8
        .align 16
        .skip 4096
stack_top:
