package mock_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/llmtap/llmtap/mock"
)

func TestAudio(t *testing.T) {
	tests := []struct {
		desc         string
		chunks, size int
		wantLen      int
	}{
		{desc: "header only", chunks: 0, size: 4800, wantLen: 44},
		{desc: "default chunks", chunks: 3, size: mock.DefaultChunk, wantLen: 44 + 3*4800},
		{desc: "small chunks", chunks: 5, size: 2, wantLen: 54},
		{desc: "negative counts as 0", chunks: -1, size: 10, wantLen: 44},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			b := mock.Audio(tt.chunks, tt.size)
			if len(b) != tt.wantLen {
				t.Fatalf("%d bytes, want %d", len(b), tt.wantLen)
			}
			checkWAVHeader(t, b)
		})
	}

	// One continuous tone, whatever the chunking.
	if a, b := mock.Audio(4, 100), mock.Audio(1, 400); !bytes.Equal(a, b) {
		t.Error("Audio(4, 100) differs from Audio(1, 400)")
	}
	pcm := mock.Audio(1, 4800)[44:]
	loudest := 0
	for i := 0; i+1 < len(pcm); i += 2 {
		v := int(int16(binary.LittleEndian.Uint16(pcm[i:])))
		loudest = max(loudest, v, -v)
	}
	if loudest < 1000 || loudest > 32767 {
		t.Errorf("peak sample %d: want an audible tone", loudest)
	}
}

// checkWAVHeader reads the header of a streamed 16-bit mono 24 kHz WAV.
func checkWAVHeader(t *testing.T, b []byte) {
	t.Helper()
	le := binary.LittleEndian
	var h struct {
		riff     [4]byte
		riffSize uint32
		wave     [4]byte
		fmt      [4]byte
		fmtSize  uint32
		format   uint16
		channels uint16
		rate     uint32
		byteRate uint32
		align    uint16
		bits     uint16
		data     [4]byte
		dataSize uint32
	}
	copy(h.riff[:], b[0:4])
	h.riffSize = le.Uint32(b[4:])
	copy(h.wave[:], b[8:12])
	copy(h.fmt[:], b[12:16])
	h.fmtSize = le.Uint32(b[16:])
	h.format, h.channels = le.Uint16(b[20:]), le.Uint16(b[22:])
	h.rate, h.byteRate = le.Uint32(b[24:]), le.Uint32(b[28:])
	h.align, h.bits = le.Uint16(b[32:]), le.Uint16(b[34:])
	copy(h.data[:], b[36:40])
	h.dataSize = le.Uint32(b[40:])
	if string(h.riff[:]) != "RIFF" || string(h.wave[:]) != "WAVE" || string(h.fmt[:]) != "fmt " || string(h.data[:]) != "data" ||
		h.fmtSize != 16 || h.format != 1 || h.channels != 1 || h.rate != 24000 || h.byteRate != 48000 || h.align != 2 || h.bits != 16 ||
		h.riffSize != 0xFFFFFFFF || h.dataSize != 0xFFFFFFFF {
		t.Errorf("WAV header %+v, want streamed PCM 16-bit mono 24000 Hz", h)
	}
}
