package mock

import (
	"encoding/binary"
	"math"
	"net/http"
)

// The audio: 16-bit PCM, mono, 24 kHz (OpenAI's TTS rate), a 400 Hz sine
// wave: 60 samples a period, so that one period's bytes repeat exactly.
const (
	sampleRate   = 24000
	toneHz       = 400
	periodBytes  = 2 * sampleRate / toneHz
	wavHeaderLen = 44
)

// period is one period of the tone's PCM bytes, computed once.
var period = func() [periodBytes]byte {
	var p [periodBytes]byte
	for i := 0; i < periodBytes/2; i++ {
		v := int16(math.Round(8000 * math.Sin(2*math.Pi*float64(i)/(periodBytes/2))))
		binary.LittleEndian.PutUint16(p[2*i:], uint16(v))
	}
	return p
}()

// Audio returns the body a speech request with the knobs tokens=chunks and
// chunk=chunkSize gets: a streaming WAV header (RIFF and data sizes
// 0xFFFFFFFF, as streaming encoders write them) and chunks×chunkSize bytes
// of PCM. Negative arguments count as 0.
func Audio(chunks, chunkSize int) []byte {
	n := max(chunks, 0) * max(chunkSize, 0)
	return appendPCM(appendWAVHeader(make([]byte, 0, wavHeaderLen+n)), 0, n)
}

// appendWAVHeader appends the header of an endless 16-bit mono WAV stream.
func appendWAVHeader(b []byte) []byte {
	le := binary.LittleEndian
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, 0xFFFFFFFF) // unknown length: a stream
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16)           // fmt chunk size
	b = le.AppendUint16(b, 1)            // PCM
	b = le.AppendUint16(b, 1)            // mono
	b = le.AppendUint32(b, sampleRate)   // samples a second
	b = le.AppendUint32(b, 2*sampleRate) // bytes a second
	b = le.AppendUint16(b, 2)            // bytes a frame
	b = le.AppendUint16(b, 16)           // bits a sample
	b = append(b, "data"...)
	return le.AppendUint32(b, 0xFFFFFFFF)
}

// appendPCM appends n bytes of the tone's PCM, from byte offset off of the
// stream on.
func appendPCM(b []byte, off, n int) []byte {
	for n > 0 {
		i := off % periodBytes
		c := min(n, periodBytes-i)
		b = append(b, period[i:i+c]...)
		off, n = off+c, n-c
	}
	return b
}

// speech answers POST /v1/audio/speech.
func (s *Server) speech(x *exchange, _ *request, k knobs) {
	x.audio = true
	if !x.open(http.StatusOK, "audio/wav", -1) || !x.awaitFirst(k) {
		return
	}
	if k.tokens == 0 {
		x.send(appendWAVHeader(nil), false)
		return
	}
	buf := make([]byte, 0, wavHeaderLen+k.chunk)
	x.tokens(k, func(i int) []byte {
		buf = buf[:0]
		if i == 0 {
			buf = appendWAVHeader(buf)
		}
		return appendPCM(buf, i*k.chunk, k.chunk)
	})
}
